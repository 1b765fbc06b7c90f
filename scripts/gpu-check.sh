#!/usr/bin/env bash
# One prepared check of darts-prime on a machine with an NVIDIA GPU.
#
#   scripts/gpu-check.sh --prepare [--pack DIR]     on a CPU machine with Rust: builds the
#                                                   binaries and the GPU-tier test executables in
#                                                   the gpu-pack profile (release, no debug info),
#                                                   packs DIR.tar.gz (< 60 MiB)
#   scripts/gpu-check.sh [--out DIR] [--python PY] [--quick]
#                                                   on the GPU machine, from an unpacked pack (or a
#                                                   checkout with target/release): GPU inventory,
#                                                   the GPU test tier, search/eval/RNN step benches
#                                                   beside the eager-PyTorch yardstick with peak GPU
#                                                   memory, K searches sharing the card, NCCL and
#                                                   CPU-back-end collectives, a two-trial grid
#                                                   through `worker --gpu 0`; raw numbers in
#                                                   DIR/gpu-check.json, one table printed last
#   scripts/gpu-check.sh --table FILE.json          prints the table of a results file
#
# The GPU machine needs Python with torch 2.11.0 (the libtorch our build links); no Rust and no
# network. libtorch is taken from .libtorch when present, else from that Python's torch/lib.
set -euo pipefail
cd "$(dirname "$0")/.."

PACK_LIMIT_BYTES=$((60 * 1024 * 1024))
# The GPU-tier test executables (cargo test targets) that travel in the pack.
GPU_TESTS=(gpu)
BINARIES=(prime worker coordinator)

fail() {
    echo "gpu-check: error: $*" >&2
    exit 2
}

usage() {
    sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//' >&2
}

mode="run"
pack_dir="gpu-check-pack"
out_dir="gpu-check-out"
python="${PYTHON:-python3}"
table_file=""
quick=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prepare) mode="prepare"; shift ;;
        --pack) [ $# -ge 2 ] || fail "--pack needs a directory"; pack_dir="$2"; shift 2 ;;
        --out) [ $# -ge 2 ] || fail "--out needs a directory"; out_dir="$2"; shift 2 ;;
        --python) [ $# -ge 2 ] || fail "--python needs an interpreter"; python="$2"; shift 2 ;;
        --table) [ $# -ge 2 ] || fail "--table needs a results file"; mode="table"; table_file="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage; fail "unknown argument \`$1\`" ;;
    esac
done

# Prints the table of a results file: one row per measurement, the yardstick beside ours.
print_table() {
    "$python" - "$1" <<'PY'
import json, sys
path = sys.argv[1]
try:
    with open(path) as f:
        results = json.load(f)
except (OSError, ValueError) as error:
    sys.exit(f"gpu-check: error: {path}: {error}")
if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
    sys.exit(f"gpu-check: error: {path}: expected an object with a `rows` list")
def cell(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
header = ["check", "setting", "ours", "yardstick", "ratio", "peak MiB", "yardstick MiB", "images/s", "status"]
rows = []
for number, row in enumerate(results["rows"], 1):
    if not isinstance(row, dict) or "check" not in row:
        sys.exit(f"gpu-check: error: {path}: rows[{number - 1}] has no `check`")
    ours, theirs = row.get("ours_s"), row.get("yardstick_s")
    ratio = theirs / ours if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)) and ours > 0 else None
    rows.append([row["check"], row.get("setting", ""), cell(ours), cell(theirs),
                 "-" if ratio is None else f"{ratio:.2f}x", cell(row.get("peak_mib")),
                 cell(row.get("yardstick_peak_mib")), cell(row.get("images_per_s"), 5),
                 row.get("status", "")])
widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
for r in [header, ["-" * w for w in widths]] + rows:
    print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
gpu = results.get("gpu")
if gpu:
    print(f"GPU: {gpu}")
PY
}

if [ "$mode" = "table" ]; then
    print_table "$table_file"
    exit 0
fi

if [ "$mode" = "prepare" ]; then
    command -v cargo >/dev/null 2>&1 || fail "--prepare needs cargo (run it on the build machine)"
    bash scripts/setup.sh >&2
    cargo build --locked --profile gpu-pack --bins >&2
    test_args=()
    for name in "${GPU_TESTS[@]}"; do test_args+=(--test "$name"); done
    # The test executables' paths, from cargo's JSON messages.
    mapfile -t test_exes < <(cargo test --locked --profile gpu-pack --workspace --no-run "${test_args[@]}" \
        --message-format=json 2>/dev/null |
        "$python" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])')
    [ "${#test_exes[@]}" -gt 0 ] || fail "no GPU-tier test executable was built"
    rm -rf "$pack_dir"
    mkdir -p "$pack_dir/target/release" "$pack_dir/tests" "$pack_dir/scripts" "$pack_dir/bench"
    for bin in "${BINARIES[@]}"; do
        cp "target/gpu-pack/$bin" "$pack_dir/target/release/"
    done
    for exe in "${test_exes[@]}"; do cp "$exe" "$pack_dir/tests/"; done
    cp scripts/gpu-check.sh "$pack_dir/scripts/"
    cp bench/*.py "$pack_dir/bench/"
    [ -f .torch-variant ] && cp .torch-variant "$pack_dir/"
    tar -czf "$pack_dir.tar.gz" "$pack_dir"
    size=$(stat -c %s "$pack_dir.tar.gz")
    echo "gpu-check: packed $pack_dir.tar.gz: $((size / 1024 / 1024)) MiB"
    ls -l "$pack_dir"/target/release "$pack_dir"/tests >&2
    [ "$size" -le "$PACK_LIMIT_BYTES" ] || fail "the pack is $size bytes, over the 60 MiB limit"
    exit 0
fi

# ---- run mode, on the GPU machine ----
command -v nvidia-smi >/dev/null 2>&1 || fail "nvidia-smi not found: run this on a machine with an NVIDIA GPU"
for bin in "${BINARIES[@]}"; do
    [ -x "target/release/$bin" ] || fail "target/release/$bin missing: unpack the pack from \`scripts/gpu-check.sh --prepare\` here"
done
if [ -d .libtorch/lib ]; then
    torch_lib="$(realpath .libtorch/lib)"
else
    torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') ||
        fail "no .libtorch and \`$python -c 'import torch'\` failed: give --python with torch 2.11.0"
fi
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$out_dir"
raw="$out_dir/raw.jsonl"
: >"$raw"
log="$out_dir/log.txt"
: >"$log"
iters=10
[ "$quick" = 1 ] && iters=3

# Appends one row (a JSON object given as key=value pairs, values JSON-encoded by Python).
row() {
    "$python" -c 'import json, sys
row = {}
for pair in sys.argv[1:]:
    key, _, value = pair.partition("=")
    try:
        row[key] = json.loads(value)
    except ValueError:
        row[key] = value
print(json.dumps(row))' "$@" >>"$raw"
}

# Runs a command while sampling GPU 0's used memory; leaves its stdout in $measured and the
# peak (MiB above the idle level) in $peak_mib. Not for $(...): those would be lost there.
with_peak() {
    local base samples pid
    base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | head -n 1)
    samples=$(mktemp)
    (while true; do
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 >>"$samples" 2>/dev/null
        sleep 0.2
    done) &
    pid=$!
    local status=0
    "$@" >"$out_dir/last-output" 2>>"$log" || status=$?
    measured=$(cat "$out_dir/last-output")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    peak_mib=$(awk -v b="$base" 'BEGIN { m = 0 } { if ($1 - b > m) m = $1 - b } END { print m }' "$samples")
    rm -f "$samples"
    return "$status"
}

median_of() {
    "$python" -c 'import json, sys; print(json.loads(sys.argv[1])["median_s"])' "$1"
}

# A field of a bench line, or null.
field_of() {
    "$python" -c 'import json, sys; print(json.dumps(json.loads(sys.argv[1]).get(sys.argv[2])))' "$1" "$2"
}

echo "gpu-check: inventory" >&2
gpu_line=$(nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader -i 0)
echo "$gpu_line" >"$out_dir/inventory.txt"
nvidia-smi >>"$out_dir/inventory.txt" 2>&1 || true
target/release/prime --version >>"$out_dir/inventory.txt"

echo "gpu-check: GPU test tier" >&2
for exe in tests/*; do
    [ -f "$exe" ] && [ -x "$exe" ] || continue
    name=$(basename "$exe")
    # cuDNN computes float32 convolutions in TF32 by default on Ampere and newer; the tier's
    # float32 agreement bounds are for true float32.
    if NVIDIA_TF32_OVERRIDE=0 "$exe" --ignored --test-threads=1 >"$out_dir/tier-$name.txt" 2>&1; then status=passed; else status=FAILED; fi
    summary=$(grep -E '^test result:' "$out_dir/tier-$name.txt" | tail -n 1 || true)
    row check="test tier" setting="$name" status="$status: ${summary#test result: }"
done

# Search step, ours and the yardstick alternating, at batch 64 and at the largest batch of
# 128/256/512 whose search step stays within 16 GiB.
search_pair() {
    local batch="$1" round ours theirs ours_peak theirs_peak
    for round in 1 2; do
        ours="" theirs=""
        with_peak target/release/prime bench search-step --device cuda --batch "$batch" --iters "$iters" --warmup 2 && ours="$measured"
        ours_peak="$peak_mib"
        with_peak "$python" bench/pytorch_search_step.py --device cuda --batch "$batch" --iters "$iters" --warmup 2 && theirs="$measured"
        theirs_peak="$peak_mib"
        row check="search step" setting="batch $batch round $round" \
            ours_s="$([ -n "$ours" ] && median_of "$ours" || echo null)" \
            yardstick_s="$([ -n "$theirs" ] && median_of "$theirs" || echo null)" \
            peak_mib="$ours_peak" yardstick_peak_mib="$theirs_peak" \
            status="$([ -n "$ours" ] && [ -n "$theirs" ] && echo ok || echo 'failed (see log.txt)')"
    done
}
echo "gpu-check: search step" >&2
search_pair 64
largest=""
for batch in 128 256 512; do
    if with_peak target/release/prime bench search-step --device cuda --batch "$batch" --iters 1 --warmup 1 &&
        [ "$peak_mib" -le 16384 ]; then
        largest="$batch"
    else
        break
    fi
done
if [ -n "$largest" ]; then search_pair "$largest"; fi

# The bf16 search (speed.search_precision = "bf16") beside the yardstick under bf16 autocast.
echo "gpu-check: bf16 search step" >&2
ours="" theirs=""
with_peak target/release/prime bench search-step --device cuda --batch 64 --iters "$iters" --warmup 2 \
    --set speed.search_precision=bf16 && ours="$measured"
ours_peak="$peak_mib"
with_peak "$python" bench/pytorch_search_step.py --device cuda --batch 64 --iters "$iters" --warmup 2 \
    --autocast bf16 && theirs="$measured"
row check="search step" setting="batch 64 bf16" \
    ours_s="$([ -n "$ours" ] && median_of "$ours" || echo null)" \
    yardstick_s="$([ -n "$theirs" ] && median_of "$theirs" || echo null)" \
    peak_mib="$ours_peak" yardstick_peak_mib="$peak_mib" \
    status="$([ -n "$ours" ] && [ -n "$theirs" ] && echo ok || echo 'failed (see log.txt)')"

echo "gpu-check: evaluation step" >&2
for batch in 96 256; do
    for setting in "float32:" "bf16:--set speed.autocast=bf16" "channels-last:--set speed.channels_last=true"; do
        label="${setting%%:*}"
        read -r -a extra <<<"${setting#*:}"
        if with_peak target/release/prime bench eval-step --device cuda --batch "$batch" --iters "$iters" --warmup 2 "${extra[@]}"; then
            row check="eval step" setting="batch $batch $label" ours_s="$(median_of "$measured")" peak_mib="$peak_mib" status=ok
        else
            row check="eval step" setting="batch $batch $label" status="failed (see log.txt)"
        fi
    done
done

# Trials sharing the card (a `gpu_share = K` slot): K searches at once, each its own network on
# its own thread of one process as the worker runs them, all on the device's default stream
# (the worker's default) or each on a stream of its own (`worker --own-streams`); ours_s is
# their median step and images/s their summed rate, against one search alone.
echo "gpu-check: searches sharing the GPU" >&2
for setting in "1:" "2:" "4:" "2:--own-streams" "4:--own-streams"; do
    trials="${setting%%:*}"
    streams="${setting#*:}"
    label="K=$trials, batch 64 each${streams:+, own streams}"
    if with_peak target/release/prime bench search-step --device cuda --batch 64 --iters "$iters" --warmup 2 --trials "$trials" $streams; then
        row check="shared search step" setting="$label" ours_s="$(median_of "$measured")" \
            images_per_s="$(field_of "$measured" images_per_s)" peak_mib="$peak_mib" status=ok
    else
        row check="shared search step" setting="$label" status="failed (see log.txt)"
    fi
done

# The collectives of a data-parallel evaluation: one rank without a group, then one rank
# through NCCL and through the CPU back-end (the cost of the reduction itself); with two GPUs
# or more, every GPU over each back-end (the scaling at the same global batch).
echo "gpu-check: data-parallel collectives" >&2
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
collective_runs=("1 rank, no group:--ranks 1" "1 rank, NCCL:--ranks 1 --collectives nccl" "1 rank, CPU back-end:--ranks 1 --collectives cpu")
if [ "${gpus:-0}" -ge 2 ]; then
    collective_runs+=("$gpus ranks, NCCL:--ranks $gpus --collectives nccl" "$gpus ranks, CPU back-end:--ranks $gpus --collectives cpu")
fi
for setting in "${collective_runs[@]}"; do
    label="${setting%%:*}"
    read -r -a extra <<<"${setting#*:}"
    if with_peak target/release/prime bench eval-step --device cuda --batch 96 --iters "$iters" --warmup 2 "${extra[@]}"; then
        row check="data-parallel eval step" setting="$label, batch 96" ours_s="$(median_of "$measured")" \
            images_per_s="$(field_of "$measured" images_per_s)" peak_mib="$peak_mib" status=ok
    else
        row check="data-parallel eval step" setting="$label, batch 96" status="failed (see log.txt)"
    fi
done

# Short searches end to end (data, schedule, records, checkpoints) on synthetic images: step
# records read back after every step (as before) or every 50 steps, cuDNN benchmark mode on (the
# default) or off. Wall seconds of the whole command, start-up included: compare the rows with
# each other.
echo "gpu-check: search runs" >&2
search_data="$out_dir/search-data"
search_images=2048
[ "$quick" = 1 ] && search_images=512
target/release/prime data synth --out "$search_data" --size "$search_images" --test-size 64 >>"$log" 2>&1 || true
run_index=0
for setting in "read back every step:speed.read_back_every=1" \
    "read back every 50 steps:speed.read_back_every=50" \
    "every 50, cuDNN benchmark off:speed.read_back_every=50 speed.cudnn_benchmark=false"; do
    label="${setting%%:*}"
    sets=()
    for pair in ${setting#*:}; do sets+=(--set "$pair"); done
    run_index=$((run_index + 1))
    rm -rf "$out_dir/search-run-$run_index"
    started=$(date +%s.%N)
    if with_peak target/release/prime search --method darts-prime --dataset cifar10 \
        --data-dir "$search_data" --no-download --device cuda --quiet \
        --out "$out_dir/search-run-$run_index" --set epochs=1 --set data.batch_size=64 \
        "${sets[@]}"; then
        seconds=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        row check="search run" setting="$label" ours_s="$seconds" peak_mib="$peak_mib" status=ok
    else
        row check="search run" setting="$label" status="failed (see log.txt)"
    fi
done

echo "gpu-check: RNN search step" >&2
ours="" theirs=""
with_peak target/release/prime bench rnn-search-step --device cuda --iters "$iters" --warmup 2 && ours="$measured"
ours_peak="$peak_mib"
with_peak "$python" bench/pytorch_rnn_search_step.py --device cuda --iters "$iters" --warmup 2 && theirs="$measured"
row check="rnn search step" setting="batch 256" \
    ours_s="$([ -n "$ours" ] && median_of "$ours" || echo null)" \
    yardstick_s="$([ -n "$theirs" ] && median_of "$theirs" || echo null)" \
    peak_mib="$ours_peak" yardstick_peak_mib="$peak_mib" \
    status="$([ -n "$ours" ] && [ -n "$theirs" ] && echo ok || echo 'failed (see log.txt)')"

echo "gpu-check: two-trial grid through worker --gpu 0" >&2
grid_dir="$out_dir/grid"
rm -rf "$grid_dir"
mkdir -p "$grid_dir"
port=$((50000 + RANDOM % 10000))
url="http://127.0.0.1:$port"
cat >"$grid_dir/grid.toml" <<'TOML'
version = 1
name = "gpu-check"
datasets = ["cifar10"]
seeds = [1, 2]

[search]
epochs = 1
batch_size = 32
init_channels = 8
layers = 5
data = "synthetic"
train_samples = 512

[[methods]]
preset = "darts-prime"
TOML
target/release/coordinator --listen "127.0.0.1:$port" --state "$grid_dir/state" --heartbeat-secs 1 2>>"$log" &
coordinator_pid=$!
target/release/worker --coordinator "$url" --gpu 0 --work-dir "$grid_dir/worker" 2>>"$log" &
worker_pid=$!
started=$(date +%s)
grid_status="failed (see log.txt)"
if target/release/prime submit "$grid_dir/grid.toml" --coordinator "$url" 2>>"$log"; then
    while [ $(($(date +%s) - started)) -lt 300 ]; do
        states=$(target/release/prime status gpu-check --coordinator "$url" 2>>"$log" || true)
        if [ "$(grep -c succeeded <<<"$states")" -ge 2 ]; then grid_status=ok; break; fi
        if grep -q failed <<<"$states"; then break; fi
        sleep 2
    done
fi
elapsed=$(($(date +%s) - started))
target/release/prime workers --coordinator "$url" >"$grid_dir/workers.txt" 2>>"$log" || true
kill "$worker_pid" "$coordinator_pid" 2>/dev/null || true
wait "$worker_pid" "$coordinator_pid" 2>/dev/null || true
row check="grid via worker --gpu 0" setting="2 search trials" ours_s="$elapsed" status="$grid_status"

"$python" - "$raw" "$out_dir/gpu-check.json" "$gpu_line" <<'PY'
import json, sys
raw, out, gpu = sys.argv[1:4]
with open(raw) as f:
    rows = [json.loads(line) for line in f if line.strip()]
with open(out, "w") as f:
    json.dump({"gpu": gpu, "rows": rows}, f, indent=2)
PY
echo "gpu-check: raw numbers in $out_dir/gpu-check.json" >&2
print_table "$out_dir/gpu-check.json"
