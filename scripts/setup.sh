#!/usr/bin/env bash
# Create ./.venv and install trpo_exp with everything it needs (idempotent; ~2 min the first time).
# torch is pinned to 2.13.0: on the project's machines that is a CPU build on local disk, and an
# unpinned torch would pull a multi-GB CUDA build. Set TORCH_SPEC to choose another build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
echo "setup: upgrading pip"
.venv/bin/python -m pip install --quiet --upgrade pip
echo "setup: installing ${TORCH_SPEC:-torch==2.13.0} (CPU build)"
.venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
echo "setup: installing trpo_exp and its dependencies (gymnasium[mujoco], hydra, optuna, wandb, psycopg, ...)"
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "setup: done (.venv ready)"
