"""The peer that serves our wrapper: LitServe with its batching on, around the same wrapper code
modeldeploy runs, so that comparing the two measures the serving front and the batching alone.

LitServe batches what arrives within ``batch_timeout`` up to ``max_batch_size``; each batch goes
through ``ModelWrapper.predict``, which plans it into length-grouped sub-batches with the cost
model calibrated as modeldeploy's batcher calibrates it, so the two servers run the same planner
and differ only in the front and in how a round is gathered.

    python bench/litserve_app.py MODEL MODEL_DIR PORT MAX_BATCH_SIZE BATCH_TIMEOUT DEVICE SETTINGS_JSON

SETTINGS_JSON: the model's settings, as modeldeploy's config gives them (``--setting`` of the harness).
"""

from __future__ import annotations

import litserve as ls

from modeldeploy.batching import calibrate_cost_model
from modeldeploy.plugins import get_catalog
import litserve_main
from servers import set_torch_threads


class WrapperAPI(ls.LitAPI):
    def __init__(self, model: str, source: str, settings: dict, **batching) -> None:
        super().__init__(**batching)
        self.model_name, self.source, self.settings = model, source, settings

    def setup(self, device: str) -> None:
        set_torch_threads()
        wrapper_class = get_catalog().models[self.model_name].wrapper_class
        self.wrapper = wrapper_class(source=self.source, device=device, settings=self.settings).ensure_loaded()
        self.wrapper.cost_model = calibrate_cost_model(self.wrapper)

    def decode_request(self, request: dict) -> str:
        return request["data"]

    def predict(self, texts: list[str]) -> list:
        return self.wrapper.predict(texts)

    def encode_response(self, output) -> dict:
        return {"model_name": self.model_name, "body": output}


if __name__ == "__main__":
    litserve_main.serve(WrapperAPI)
