#!/usr/bin/env bash
# The GPU suite in one command (issue #12). On the GPU machine, from the repository root, with the official code
# copied to .bench-official (see ../shared/bench-official/README.md):
#   mkdir -p .bench-official && cp -r ../shared/bench-official/. .bench-official/
#   bash benchmarks/gpu_suite.sh [OUT_DIR]        # writes OUT_DIR/gpu_suite.json and OUT_DIR/gpu_suite.md
set -euo pipefail
out="${1:-${OUT:-benchmarks/out}}"
mkdir -p "$out"
if [ -d .bench-official/wheels ]; then  # the pure-Python packages the official code needs (no network needed)
  python3 -m pip install -q --no-index --no-deps --target /tmp/lvcd-official-site .bench-official/wheels/*.whl
  export PYTHONPATH="/tmp/lvcd-official-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python3 benchmarks/gpu_suite.py --official .bench-official \
  --output "$out/gpu_suite.json" --markdown "$out/gpu_suite.md" "${@:2}"
