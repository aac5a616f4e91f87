#!/usr/bin/env bash
# Set up (as scripts/setup.sh) and run the embedded synthetic demo on the CPU.
# Usage: bash scripts/demo.sh [gazeclip demo options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
gazeclip demo "$@"
