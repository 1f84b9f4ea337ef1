"""The peer: LitServe with its batching on, serving the same wrapper code.

LitServe batches what arrives within ``batch_timeout`` up to ``max_batch_size`` and runs it as
one padded forward pass in arrival order.

    python bench/litserve_app.py MODEL MODEL_DIR PORT MAX_BATCH_SIZE BATCH_TIMEOUT
"""

from __future__ import annotations

import sys

import litserve as ls

from modeldeploy.plugins import get_catalog
from servers import set_torch_threads


class WrapperAPI(ls.LitAPI):
    def __init__(self, model: str, source: str, **batching) -> None:
        super().__init__(**batching)
        self.model_name, self.source = model, source

    def setup(self, device: str) -> None:
        set_torch_threads()
        wrapper_class = get_catalog().models[self.model_name].wrapper_class
        self.wrapper = wrapper_class(source=self.source, device="cpu").ensure_loaded()

    def decode_request(self, request: dict) -> str:
        return request["data"]

    def predict(self, texts: list[str]) -> list:
        return self.wrapper.run_batch(texts)

    def encode_response(self, output) -> dict:
        return {"model_name": self.model_name, "body": output}


if __name__ == "__main__":
    name, directory, port, batch, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    api = WrapperAPI(name, directory, max_batch_size=batch, batch_timeout=timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")
