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
import sys
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

    ``huggingface_hub`` reads the variable when it is imported; if it already is (a notebook that
    imported transformers first), its offline switch is turned on too. Does nothing, and sends
    nothing, when the variable is already set.
    """
    if os.environ.get(OFFLINE_ENV):
        return os.environ[OFFLINE_ENV].strip().lower() in {"1", "true", "yes", "on"}
    if hub_reachable():
        return False
    os.environ[OFFLINE_ENV] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    log.warning("the HuggingFace hub is unreachable: hub ids load from the local cache only (%s=1)", OFFLINE_ENV)
    return True


def is_cached(repo_id: str) -> bool:
    """Whether the local HuggingFace cache holds ``repo_id``'s config (so it loads offline)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # not a valid repo id: certainly not cached
        return False
