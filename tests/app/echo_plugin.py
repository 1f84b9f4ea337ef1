"""An in-process test plugin: a weightless model whose behaviour each test can steer.

``EchoWrapper`` answers ``{"length": len(text)}``. A text starting with ``fail`` raises inside
the model, and ``block`` waits for :data:`RELEASE`, so tests can hold the inference thread
busy to fill the queue or outlast a timeout without sleeping; ``sleep:S`` takes S seconds, so
the batcher learns what an item costs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import modeldeploy
from modeldeploy import ModelWrapper

RELEASE = threading.Event()
BLOCKED = threading.Event()


class EchoWrapper(ModelWrapper):
    name = "echo"
    task = "echo"
    default_source = "nowhere"
    description = "Counts characters. <b>Not bold</b>"
    example = "<script>window.pwned = 1</script>"

    def load(self, source: str, device: str) -> None:
        self.model = "echo"

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    def predict_batch(self, items: list[str]) -> list[Any]:
        for text in items:
            if text.startswith("fail"):
                raise RuntimeError("secret internal detail")
            if text.startswith("block"):
                BLOCKED.set()
                RELEASE.wait(30)
            if text.startswith("sleep:"):
                time.sleep(float(text.split()[0][len("sleep:"):]))
        return [{"length": len(text)} for text in items]


@modeldeploy.hookimpl
def register_models(register):
    register(EchoWrapper)
