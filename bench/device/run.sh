#!/usr/bin/env bash
# The benchmark on a lent GPU machine, in one call: `run` with carry ["bench/.work/device"] and
# command `bash bench/device/run.sh` (bench/device/prepare.sh packs what travels). Installs the
# carried wheels beside the machine's own torch and transformers, widens the MiniLM classifier back
# to fp32, builds the base-size NER and summarization models, then runs bench/harness.py on CUDA
# model by model, the process engine beside the local one. Each model's results.json and the log
# land in $OUT (render them here with `python bench/report.py`); a model cut off by the time limit
# leaves its lines in the log. MODELS and SECONDS_PER_POINT are variables so a short lease can
# narrow the run (at most 8 files come back: three results.json, the log and four lone-request
# files); STAGES picks what runs, in order: curves (the harness, default) and lone
# (bench/lone_request.py on both engines: what the server adds to one request, paired with
# in-process), e.g. STAGES="lone curves"; front (bench/front_cost.py on the process engine: what the
# HTTP front costs per answer on this host, with a model that costs nothing and beside the
# classifier on the GPU, with 1, 2 and 4 front processes (server.fronts); two more files).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/device-out}
MODELS=${MODELS:-sentiment ner summarization}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-3}
DEVICE=${DEVICE:-cuda}  # cpu: a dry run of this script on a machine without a GPU
STAGES=${STAGES:-curves}
BUNDLE=bench/.work/device
WORK=/tmp/modeldeploy-bench
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || [ "$DEVICE" = cpu ] || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$BUNDLE"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site PATH="$PWD/$BUNDLE/bin:$PATH" LD_LIBRARY_PATH="$PWD/$BUNDLE/lib:${LD_LIBRARY_PATH:-}"
# bench/breakdown.py looks for py-spy beside the interpreter.
ln -sf /tmp/site/bin/py-spy "$(dirname "$(python3 -c 'import sys; print(sys.executable)')")/py-spy"
python3 -c 'import flask, litserve, modeldeploy, torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' \
  || exit 1
wrk --version | head -1
python3 - "$BUNDLE/minilm" "$WORK/minilm" <<'PY' || exit 1
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
source, target = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.safetensors"), dirs_exist_ok=True)
weights = load_file(source / "model.fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}, target / "model.safetensors")
PY
python3 -c "
import sys; from pathlib import Path; from modeldeploy.testing import build_ner, build_summarization
root = Path(sys.argv[1]); build_ner(root / 'ner', 'base'); build_summarization(root / 'summarization', 'base')
" "$WORK/models" || exit 1
curves() {
for model in $MODELS; do
  echo "== $(date +%T) $model"
  breakdown=--no-breakdown
  [ "$model" = sentiment ] && breakdown="--breakdown-seconds 8"
  python3 bench/harness.py --models-dir "$WORK/models" --minilm "$WORK/minilm" --work "$WORK" \
    --out "$WORK/out-$model" --device "$DEVICE" --models "$model" --process-engine \
    --concurrency 1,4,16,32,64 --seconds "$SECONDS_PER_POINT" --warmup-seconds 2 --reference-items 128 \
    --litserve-sweep '' $breakdown \
    && cp "$WORK/out-$model/results.json" "$OUT/$model.json"
done
}
lone() {
  mkdir -p "$WORK/lone-models"
  ln -sfn "$WORK/minilm" "$WORK/lone-models/sentiment"
  ln -sfn "$WORK/models/ner" "$WORK/lone-models/ner"
  ln -sfn "$WORK/models/summarization" "$WORK/lone-models/summarization"
  for engine in local process; do
    echo "== $(date +%T) lone request, $engine engine"
    python3 bench/lone_request.py --device "$DEVICE" --engine "$engine" --models "${MODELS// /,}" \
      --models-dir "$WORK/lone-models" --texts 64 --passes 1 --torch-threads "$(nproc)" --work "$WORK" \
      --out "$OUT/lone-$engine"
  done
}
front() {
  echo "== $(date +%T) the front's cost"
  python3 bench/front_cost.py --workloads stream,classifier --engines process --fronts 1,2,4 --concurrency 32,64 \
    --seconds "$SECONDS_PER_POINT" --classifier "$WORK/minilm" --device "$DEVICE" --work "$WORK" \
    --out "$OUT/front-cost"
}
for stage in $STAGES; do
  "$stage"
done
echo "== $(date +%T) done"
