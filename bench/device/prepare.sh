#!/usr/bin/env bash
# Packs what a GPU machine lent for a few minutes needs to run the benchmark (bench/device/run.sh):
# that machine has Python 3.12 with torch and transformers but reaches no registry, and the tree
# that travels is limited to 64 MiB. Writes bench/.work/device/ (git-ignored): our wheels and the
# missing dependencies' wheels for CPython 3.12, wrk with its LuaJIT library, and the MiniLM
# classifier in fp16 (half the bytes; run.sh widens it back to fp32, which changes nothing about
# speed). The NER and summarization models are rebuilt there (seconds). Run here, then carry
# bench/.work/device.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
BUNDLE=bench/.work/device
rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/wheels" "$BUNDLE/bin" "$BUNDLE/lib"
# Ours, pure Python (the embeddings plugin too: bench/minilm.py, which the harness imports, finds
# models through it).
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$BUNDLE/wheels" . plugins/sentiment plugins/ner \
  plugins/summarization plugins/embeddings
rm -rf build plugins/*/build
# What the GPU image lacks (it has torch, transformers, numpy, pyyaml, pluggy, prometheus-client,
# jinja2, click, anyio, h11, matplotlib, psutil), at the versions our tests run with.
MISSING="flask werkzeug itsdangerous blinker dill waitress litserve fastapi starlette uvicorn pydantic
pydantic-core annotated-types annotated-doc typing-inspection typing-extensions opentelemetry-api importlib-metadata
zipp pyzmq py-spy"
specs=()
for name in $MISSING; do
  version=$("$PYTHON" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  specs+=("$name${version:+==$version}")
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$BUNDLE/wheels" "${specs[@]}"
cp "$(command -v wrk)" "$BUNDLE/bin/"
cp "$(ldd "$(command -v wrk)" | awk '/libluajit/ {print $3}')" "$BUNDLE/lib/"
"$PYTHON" - "$BUNDLE/minilm" <<'PY'
import shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
source, target = Path("bench/.work/minilm"), Path(sys.argv[1])
shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors"))
weights = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(source / "model.safetensors").items()}
save_file(weights, target / "model.fp16.safetensors")
PY
du -sh "$BUNDLE"
