#!/usr/bin/env bash
# Make a fresh machine ready to build darts-prime: a project-local Python virtual environment
# holding the pinned PyTorch (whose libtorch tch links against) and the `.libtorch` link that
# .cargo/config.toml points the build at. Idempotent: does nothing when all is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="2.11.0"
PYTHON="${PYTHON:-python3}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust from https://rustup.rs first" >&2
    exit 1
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON not found; darts-prime needs Python 3.9+ to install the pinned PyTorch" >&2
    exit 1
fi

installed_version() {
    .venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true
}

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
if [ "$(installed_version)" != "$TORCH_VERSION" ]; then
    echo "setup: installing torch==$TORCH_VERSION into .venv (a few GB, once)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
fi

torch_dir=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
relative=$(.venv/bin/python -c 'import os, sys; print(os.path.relpath(sys.argv[1]))' "$torch_dir")
if [ "$(readlink .libtorch 2>/dev/null || true)" != "$relative" ]; then
    ln -sfn "$relative" .libtorch
fi
