#!/usr/bin/env bash
# The benchmark, one command: builds base-size models once (bench/.work/, git-ignored), then runs
# bench/harness.py, which writes bench/results.md, bench/results.json and bench/throughput.png.
# Needs wrk (apt) and the dev requirements (litserve, matplotlib); extra arguments go to the harness.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTHON=${PYTHON:-.venv/bin/python}
MODELS=bench/.work/models
if [ ! -f "$MODELS/ner/config.json" ]; then
  "$PYTHON" -m modeldeploy.testing build "$MODELS" --size base
fi
exec "$PYTHON" bench/harness.py --models-dir "$MODELS" "$@"
