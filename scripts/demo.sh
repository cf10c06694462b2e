#!/usr/bin/env bash
# Set everything up, then run the demo: TRPO on MuJoCo Hopper-v5, 3 seeds, a small budget, ending
# with a summary table of the three runs (their records land in multirun/<date>/<time>/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m trpo_exp -m experiment=hopper_demo seed=0,1,2 "$@"
