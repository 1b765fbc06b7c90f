#!/usr/bin/env bash
# Compares one first-order recurrent search iteration of darts-prime with the eager-PyTorch
# yardstick (bench/pytorch_rnn_search_step.py) in the same run, alternating the two ROUNDS times,
# and prints every JSON line followed by the ratio of median step times (yardstick / darts-prime).
#
#   scripts/bench-rnn-search-step.sh [--device cpu|cuda] [--vocab 10000] [--nhid 300] [--batch 256]
#                                    [--bptt 35] [--threads 1] [--iters 10] [--warmup 2]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
cargo build --locked --release --bin prime >&2
rounds="${ROUNDS:-2}"
ours=() theirs=()
for _ in $(seq "$rounds"); do
    ours+=("$(target/release/prime bench rnn-search-step "$@")")
    theirs+=("$(.venv/bin/python bench/pytorch_rnn_search_step.py "$@" 2>/dev/null)")
    echo "${ours[-1]}"
    echo "${theirs[-1]}"
done
.venv/bin/python - "${ours[@]}" -- "${theirs[@]}" <<'PY'
import json, statistics, sys
args = sys.argv[1:]
split = args.index("--")
ours = [json.loads(line)["median_s"] for line in args[:split]]
theirs = [json.loads(line)["median_s"] for line in args[split + 1:]]
ratio = statistics.median(theirs) / statistics.median(ours)
print(json.dumps({"yardstick_median_s": statistics.median(theirs),
                  "darts_prime_median_s": statistics.median(ours),
                  "speedup": round(ratio, 3)}))
PY
