"""The original app's way, as a baseline: Flask, one forward pass per HTTP request.

Same wrapper code and the same WSGI server (waitress) as modeldeploy; the only difference is
that each request runs its own forward pass (serialised by the wrapper's lock).

    python bench/baseline_app.py MODEL MODEL_DIR PORT DEVICE
"""

from __future__ import annotations

import sys

from flask import Flask, jsonify, request
from waitress import serve

from modeldeploy.plugins import get_catalog
from servers import set_torch_threads


def create_app(model: str, source: str, device: str) -> Flask:
    set_torch_threads()
    wrapper = get_catalog().models[model].wrapper_class(source=source, device=device).ensure_loaded()
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        body = request.get_json(force=True)
        return jsonify({"model_name": model, "body": wrapper.predict(body["data"])})

    @app.get("/health")
    def health():
        return jsonify({"status": "ok"})

    return app


if __name__ == "__main__":
    name, directory, port, device = sys.argv[1:5]
    serve(create_app(name, directory, device), host="127.0.0.1", port=int(port), threads=16)
