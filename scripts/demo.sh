#!/usr/bin/env bash
# A small end-to-end demo on built-in defaults: `prime demo` starts an embedded coordinator and
# a local CPU worker in one process, submits a small grid (two methods x two seeds: a tiny
# search, then a short evaluation of each genotype, on synthetic CIFAR-10), shows live
# progress and ends with the paper-style results table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --bin prime
exec target/debug/prime demo "$@"
