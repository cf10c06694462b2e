#!/usr/bin/env bash
# Create ./.venv and install trpo_exp with everything it needs (idempotent; ~2 min the first time).
# torch is pinned to 2.13.0: on the project's machines that is a CPU build on local disk, and an
# unpinned torch would pull a multi-GB CUDA build. Set TORCH_SPEC to choose another build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[test]"
