#!/usr/bin/env bash
# Set everything up, then check the code (ruff, mypy) and run the whole test suite on 2 workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check trpo_exp sweeps analysis tests benchmarks
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -n 2 --dist loadgroup tests "$@"
