#!/usr/bin/env bash
# Set everything up, then run the whole test suite on 2 workers (~6 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -n 2 --dist loadgroup tests "$@"
