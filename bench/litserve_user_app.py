"""LitServe as its users write it (its documentation's batching example, with transformers):
``decode_request`` takes the text, ``predict`` runs one padded tokenizer call over the batch in
arrival order and one forward pass (``generate`` for the summarizer), ``encode_response`` wraps
each result. The model path is bench/plain.py, the same code the in-process references time.

LitServe gathers what arrives within ``batch_timeout`` seconds, up to ``max_batch_size`` texts;
the harness passes the values it records in the results (16 and 0.01 s by default).

    python bench/litserve_user_app.py MODEL MODEL_DIR PORT MAX_BATCH_SIZE BATCH_TIMEOUT DEVICE OPTIONS_JSON

OPTIONS_JSON: ``{"prefix": ..., "generation": {...}}``, the summarizer's prefix and ``generate``
arguments as the plugin would use them (bench/references.py, ``plugin_generation``).
"""

from __future__ import annotations

from typing import Any

import litserve as ls

import litserve_main
from plain import PlainModel
from servers import set_torch_threads


class TransformersAPI(ls.LitAPI):
    def __init__(self, model: str, source: str, options: dict[str, Any], **batching: Any) -> None:
        super().__init__(**batching)
        self.model_name, self.source, self.options = model, source, options

    def setup(self, device: str) -> None:
        set_torch_threads()
        self.model = PlainModel.load(self.model_name, self.source, device, **self.options)

    def decode_request(self, request: dict) -> str:
        return request["data"]

    def predict(self, texts: list[str]) -> list[Any]:
        return self.model.results(texts)

    def encode_response(self, output: Any) -> dict:
        return {"model_name": self.model_name, "body": output}


if __name__ == "__main__":
    litserve_main.serve(TransformersAPI)
