#!/usr/bin/env bash
# Set up (a .venv in the project folder) and run the linters and the whole test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check gazeclip_cli tests scripts
ruff format --check gazeclip_cli tests scripts
python -m pytest "$@"
