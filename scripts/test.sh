#!/usr/bin/env bash
# Runs every check of the project on a fresh machine: installs what the build needs
# (scripts/setup.sh), then formatting, lints and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
python3 scripts/import_cycles.py
cargo clippy --workspace --all-targets --locked -- -D warnings
# libtorch picks its CPU kernels by the processor (AVX2, AVX-512), so the same program computes
# slightly different floats on different machines. Pinning the kernel level makes the suite
# compute the same numbers on every x86-64 CI machine; ATEN_CPU_CAPABILITY=default (or avx512)
# runs it under another level. --no-fail-fast: one failing test binary does not hide the rest.
export ATEN_CPU_CAPABILITY="${ATEN_CPU_CAPABILITY:-avx2}"
cargo test --workspace --locked --no-fail-fast
