#!/usr/bin/env bash
# The benchmark, one command: builds what is missing under bench/.work/ (git-ignored): the MiniLM
# classifier (bench/minilm.py, its head fitted in about half a minute) and the base-size NER and
# summarization models; then runs bench/harness.py, which writes bench/results.md,
# bench/results.json and bench/curve.png. About 25 minutes on 2 cores.
# Needs wrk (apt), py-spy and the dev requirements (litserve, matplotlib); extra arguments go to
# the harness (e.g. --models sentiment --concurrency 1,32 --seconds 3, --device cuda,
# --setting sentiment.precision=bf16, --process-engine to add modeldeploy with each model in a worker
# process; see `python bench/harness.py --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTHON=${PYTHON:-.venv/bin/python}
MODELS=bench/.work/models
MINILM=bench/.work/minilm
if [ ! -f "$MODELS/ner/config.json" ] || [ ! -f "$MODELS/summarization/config.json" ]; then
  "$PYTHON" -m modeldeploy.testing build "$MODELS" --size base
fi
if [ ! -f "$MINILM/head.json" ]; then  # head.json: built by this bench/minilm.py (older builds had a random head)
  "$PYTHON" bench/minilm.py "$MINILM"
fi
exec "$PYTHON" bench/harness.py --models-dir "$MODELS" --minilm "$MINILM" "$@"
