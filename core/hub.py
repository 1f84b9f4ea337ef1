"""Fail fast when the HuggingFace hub is unreachable.

Without a network, ``from_pretrained("some/hub-id")`` retries with back-off for about a minute
per file before giving up. A server should instead report such a model as failed within
seconds, so the server probes the hub once at start-up and, when no TCP connection can be made,
switches ``huggingface_hub`` to offline mode: hub ids then load from the local cache or fail at
once with a clear message, and local folders load as usual.
"""

from __future__ import annotations

import logging
import os
import socket
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_ENV = "HF_HUB_OFFLINE"


def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (``HF_ENDPOINT``) opens within ``timeout``."""
    url = urlsplit(endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def go_offline_if_unreachable() -> bool:
    """Set ``HF_HUB_OFFLINE=1`` when the hub cannot be reached; True when offline mode is on.

    Must run before ``huggingface_hub`` is imported (it reads the variable at import time).
    Does nothing, and sends nothing, when the variable is already set.
    """
    if os.environ.get(OFFLINE_ENV):
        return os.environ[OFFLINE_ENV].strip().lower() in {"1", "true", "yes", "on"}
    if hub_reachable():
        return False
    os.environ[OFFLINE_ENV] = "1"
    log.warning("the HuggingFace hub is unreachable: hub ids load from the local cache only (%s=1)", OFFLINE_ENV)
    return True
