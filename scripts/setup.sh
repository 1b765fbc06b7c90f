#!/usr/bin/env bash
# Make a fresh machine ready to build darts-prime: a project-local Python virtual environment
# holding the pinned PyTorch (whose libtorch tch links against) and the `.libtorch` link that
# .cargo/config.toml points the build at. Idempotent: does nothing when all is in place.
#
#   scripts/setup.sh [--torch auto|cu130|cu126|cpu] [--libtorch DIR] [--print-plan]
#
# --torch auto (the default) reads the GPUs' compute capabilities with nvidia-smi: any below 7.5
# (Volta, sm_70) takes cu126, the only build of torch 2.11 that still carries sm_70; otherwise,
# and on machines without a GPU, it takes cu130, the PyPI wheel. --torch cpu is the CPU-only
# build (for head nodes). --libtorch DIR (or LIBTORCH) links a site-provided libtorch 2.11
# instead of installing one. --print-plan prints the chosen variant and the commands and
# changes nothing. The variant is recorded in .torch-variant; the build embeds it, and
# `prime --version` and the worker's registration report it.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="2.11.0"
PYTHON="${PYTHON:-python3}"
VARIANT_FILE=".torch-variant"
# Compute capabilities each build carries (torch._C._cuda_getArchFlags() of the 2.11.0 wheels);
# recorded from the installed torch when there is one, these are for --print-plan.
ARCH_LIST_cu130="sm_75 sm_80 sm_86 sm_90 sm_100 sm_120"
ARCH_LIST_cu126="sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90"
ARCH_LIST_cpu=""
# Volta (7.0) and older are missing from the cu130 wheel.
MIN_CU130_CAPABILITY="7.5"

usage() {
    sed -n "6p" "$0" | sed "s/^# *//" >&2
}

fail() {
    echo "setup: error: $*" >&2
    exit 2
}

torch_choice="auto"
libtorch_dir=""
print_plan=0
while [ $# -gt 0 ]; do
    case "$1" in
        --torch)
            [ $# -ge 2 ] || fail "--torch needs a value: auto, cu130, cu126 or cpu"
            torch_choice="$2"
            shift 2
            ;;
        --torch=*)
            torch_choice="${1#--torch=}"
            shift
            ;;
        --libtorch)
            [ $# -ge 2 ] || fail "--libtorch needs a directory"
            libtorch_dir="$2"
            shift 2
            ;;
        --libtorch=*)
            libtorch_dir="${1#--libtorch=}"
            shift
            ;;
        --print-plan)
            print_plan=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage
            fail "unknown argument \`$1\`"
            ;;
    esac
done
case "$torch_choice" in
    auto | cu130 | cu126 | cpu) ;;
    *) fail "--torch \`$torch_choice\`: expected auto, cu130, cu126 or cpu" ;;
esac

# LIBTORCH counts as a site libtorch unless it is the project's own link (what .cargo/config.toml
# sets for cargo, and what a shell may export after reading the README).
if [ -z "$libtorch_dir" ] && [ -n "${LIBTORCH:-}" ]; then
    own=$(realpath -q .libtorch 2>/dev/null || true)
    given=$(realpath -q "$LIBTORCH" 2>/dev/null || echo "$LIBTORCH")
    if [ "$given" != "$own" ] && [ "$given" != "$(realpath -q . 2>/dev/null)/.libtorch" ]; then
        libtorch_dir="$LIBTORCH"
    fi
fi
if [ -n "$libtorch_dir" ] && [ "$torch_choice" != "auto" ]; then
    fail "--torch $torch_choice and --libtorch $libtorch_dir both choose a libtorch; give one"
fi

# The lowest compute capability nvidia-smi reports, empty without a GPU or a driver.
lowest_capability() {
    command -v nvidia-smi >/dev/null 2>&1 || return 0
    nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
        awk '/^[[:space:]]*[0-9]+(\.[0-9]+)?[[:space:]]*$/ { v = $1 + 0; if (min == "" || v < min) min = v }
             END { if (min != "") print min }'
}

reason=""
if [ -n "$libtorch_dir" ]; then
    variant="site"
    reason="site libtorch at $libtorch_dir"
elif [ "$torch_choice" = "auto" ]; then
    lowest=$(lowest_capability)
    if [ -z "$lowest" ]; then
        variant="cu130"
        reason="auto: no GPU found by nvidia-smi"
    elif awk -v c="$lowest" -v m="$MIN_CU130_CAPABILITY" 'BEGIN { exit !(c < m) }'; then
        variant="cu126"
        reason="auto: a GPU of compute capability $lowest (below $MIN_CU130_CAPABILITY)"
    else
        variant="cu130"
        reason="auto: lowest GPU compute capability $lowest"
    fi
else
    variant="$torch_choice"
    reason="--torch $torch_choice"
fi

# The pip command of each variant. cu130 is exactly the PyPI install this project always made.
pip_args=(install --quiet --disable-pip-version-check)
case "$variant" in
    cu130) pip_args+=("torch==$TORCH_VERSION") ;;
    cu126) pip_args+=("torch==$TORCH_VERSION+cu126" --index-url https://download.pytorch.org/whl/cu126) ;;
    cpu) pip_args+=("torch==$TORCH_VERSION+cpu" --index-url https://download.pytorch.org/whl/cpu) ;;
    site) pip_args=() ;;
esac

if [ "$print_plan" = 1 ]; then
    echo "variant=$variant"
    echo "reason=$reason"
    if [ "$variant" = "site" ]; then
        echo "link=.libtorch -> $libtorch_dir"
    else
        arch_var="ARCH_LIST_$variant"
        echo "arch_list=${!arch_var}"
        echo "pip=.venv/bin/python -m pip ${pip_args[*]}"
        echo "link=.libtorch -> .venv/lib/python3.X/site-packages/torch"
    fi
    exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust from https://rustup.rs first" >&2
    exit 1
fi

# The dashboard's browser test drives headless Chromium through chromium-driver, from Debian's
# packages: installed here when missing and apt-get can; otherwise that test says it skipped.
if ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "setup: installing chromium and chromium-driver (the dashboard's browser test)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "setup: chromium-driver is missing (as root: apt-get install chromium" \
            "chromium-driver); the dashboard's browser test will be skipped" >&2
    fi
fi

# Writes the variant record the build embeds (see build-support/link_libtorch.rs).
write_record() {
    local tmp="$VARIANT_FILE.tmp"
    {
        echo "variant=$1"
        echo "torch=$2"
        echo "cuda=$3"
        echo "arch_list=$4"
    } >"$tmp"
    if ! cmp -s "$tmp" "$VARIANT_FILE" 2>/dev/null; then
        mv "$tmp" "$VARIANT_FILE"
    else
        rm -f "$tmp"
    fi
}

if [ "$variant" = "site" ]; then
    [ -f "$libtorch_dir/lib/libtorch_cpu.so" ] ||
        fail "--libtorch $libtorch_dir: no lib/libtorch_cpu.so there; expected an unpacked libtorch $TORCH_VERSION"
    site_version=""
    if [ -f "$libtorch_dir/build-version" ]; then
        site_version=$(head -n 1 "$libtorch_dir/build-version")
    elif [ -f "$libtorch_dir/version.py" ]; then
        site_version=$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$libtorch_dir/version.py")
    fi
    case "$site_version" in
        "$TORCH_VERSION" | "$TORCH_VERSION"+*) ;;
        *) fail "--libtorch $libtorch_dir: version \`${site_version:-unknown}\`, tch 0.24 needs $TORCH_VERSION" ;;
    esac
    site_cuda=""
    case "$site_version" in
        *+cu*) site_cuda="${site_version##*+cu}" ;;
    esac
    ln -sfn "$(realpath "$libtorch_dir")" .libtorch
    write_record site "$site_version" "$site_cuda" ""
    echo "setup: .libtorch -> $libtorch_dir ($site_version)" >&2
    exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; darts-prime needs Python 3.9+ to install the pinned PyTorch" >&2
    exit 1
fi

# The installed torch's full version, e.g. 2.11.0+cu130.
installed_version() {
    .venv/bin/python -c 'import torch; print(torch.__version__)' 2>/dev/null || true
}

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
installed=$(installed_version)
if [ "$installed" != "$TORCH_VERSION+$variant" ]; then
    if [ -n "$installed" ]; then
        # Another build of the same version counts as installed for pip: replace it.
        pip_args+=(--force-reinstall)
    fi
    echo "setup: installing torch $TORCH_VERSION ($variant, $reason) into .venv (a few GB, once)" >&2
    .venv/bin/python -m pip "${pip_args[@]}"
fi

torch_dir=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
relative=$(.venv/bin/python -c 'import os, sys; print(os.path.relpath(sys.argv[1]))' "$torch_dir")
if [ "$(readlink .libtorch 2>/dev/null || true)" != "$relative" ]; then
    ln -sfn "$relative" .libtorch
fi
record=$(.venv/bin/python -c '
import torch
print(torch.__version__)
print(torch.version.cuda or "")
print(torch._C._cuda_getArchFlags() if hasattr(torch._C, "_cuda_getArchFlags") else "")
' 2>/dev/null)
{
    read -r full_version
    read -r cuda_version
    read -r arch_list
} <<<"$record"
write_record "$variant" "$full_version" "$cuda_version" "$arch_list"
