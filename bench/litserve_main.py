"""The command line both LitServe peers share: build the LitAPI from argv and serve it on loopback.

    python bench/litserve_app.py MODEL MODEL_DIR PORT MAX_BATCH_SIZE BATCH_TIMEOUT DEVICE SETTINGS_JSON
"""

from __future__ import annotations

import json
import sys
from typing import Any

import litserve as ls

from plain import resolve_device


def serve(api_class: type[Any]) -> None:
    """Serve ``api_class(model, folder, settings, max_batch_size=, batch_timeout=)`` as argv says."""
    name, directory, port, batch, timeout, device, settings = sys.argv[1:8]
    api = api_class(name, directory, json.loads(settings), max_batch_size=int(batch), batch_timeout=float(timeout))
    accelerator = "cuda" if resolve_device(device).startswith("cuda") else "cpu"
    server = ls.LitServer(api, accelerator=accelerator, workers_per_device=1, timeout=120)
    server.run(host="127.0.0.1", port=int(port), generate_client_file=False, log_level="warning")
