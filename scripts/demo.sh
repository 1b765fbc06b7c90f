#!/usr/bin/env bash
# A small end-to-end demo on built-in defaults: writes a synthetic CIFAR-10 in the official
# binary format, runs a short DARTS search on it with a progress bar, and shows the genotype.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --bin prime
prime=target/debug/prime
demo=runs/demo
rm -rf "$demo"
"$prime" data synth --out "$demo/data" --size 1024 --test-size 256
"$prime" search --config configs/demo.toml --data-dir "$demo/data" --no-download \
    --out "$demo/search" --threads 2 >/dev/null
"$prime" genotype show "$demo/search/genotype.json"
echo "run directory: $demo/search (config, metrics.jsonl, alphas.jsonl, genotype.json/.txt, checkpoints/)"
