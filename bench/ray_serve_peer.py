"""The peer users would write instead: Ray Serve as its docs show it, around the plain model.

``@serve.deployment`` with ``@serve.batch`` (up to MAX_BATCH_SIZE requests, waiting at most
BATCH_WAIT seconds), a plain transformers tokenizer and classifier, each batch padded to its
longest text, on a private Ray on 127.0.0.1. torch gets the machine's CPUs, as modeldeploy's
replicas do. Answers ``POST /predict`` with the same body as modeldeploy.

    python bench/ray_serve_peer.py MODEL_DIR PORT MAX_BATCH_SIZE BATCH_WAIT
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import ray
from ray import serve
from starlette.requests import Request


@serve.deployment(max_ongoing_requests=64)
class Classifier:
    def __init__(self, source: str) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModelForSequenceClassification.from_pretrained(source).eval()

    @serve.batch(max_batch_size=int(sys.argv[3]) if len(sys.argv) > 3 else 32,
                 batch_wait_timeout_s=float(sys.argv[4]) if len(sys.argv) > 4 else 0.01)
    async def classify(self, texts: list[str]) -> list[dict]:
        inputs = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with self.torch.inference_mode():
            probabilities = self.model(**inputs).logits.softmax(-1)
        scores, labels = probabilities.max(-1)
        names = self.model.config.id2label
        return [{"label": names[int(label)], "score": float(score)} for label, score in zip(labels, scores)]

    async def __call__(self, request: Request) -> dict:
        if request.method == "GET":  # /health, /health/live: the harness's and the split's probes
            return {"status": "ok"}
        body = await request.json()
        return {"model_name": body["model_name"], "body": await self.classify(body["data"])}


if __name__ == "__main__":
    source, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False,
             _node_ip_address="127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Classifier.bind(source), route_prefix="/", logging_config={"enable_access_log": False})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
