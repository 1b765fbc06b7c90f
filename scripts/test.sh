#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: installs what the build needs
# (scripts/setup.sh), then formatting, lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
