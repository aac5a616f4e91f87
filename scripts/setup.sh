#!/usr/bin/env bash
# Create .venv in the project folder and install gazeclip with its test extras and the ray extra
# (so that CI runs the Ray engine's tests on the extra users install).
# torch/torchvision are pinned to a pair that imports together on CPU-only machines;
# on a CUDA machine the same wheels carry CUDA support.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 -e ".[dev,ray]"
