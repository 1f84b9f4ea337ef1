"""Model artifacts: dill or pickle-free ``pretrained`` exports in a local folder or a GCS bucket,
with immutable history, manifests, HMAC signatures and verified local caching.

    from modeldeploy.store import load_artifact
    wrapper = load_artifact("gs://bucket/models/sentiment.dill", sha256="...")

See docs/store.md for the layout and the trust model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..plugins import ModelEntry
from ..wrapper import ModelWrapper
from .artifacts import export_artifact, open_artifact
from .backend import ArtifactStore, open_store
from .cache import default_cache_dir, fetch, pull_to_cache
from .history import Version, history
from .manifest import Manifest
from .push import PushResult, push
from .uri import is_artifact_source, split_artifact_uri
from .verification import TrustPolicy

__all__ = [
    "ArtifactStore",
    "Manifest",
    "PushResult",
    "TrustPolicy",
    "Version",
    "export_artifact",
    "fetch",
    "history",
    "is_artifact_source",
    "load_artifact",
    "load_model",
    "open_store",
    "push",
    "split_artifact_uri",
]


def load_artifact(
    uri: str,
    *,
    name: str | None = None,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
    trust_unsigned: bool = False,
    device: str = "auto",
    settings: Mapping[str, Any] | None = None,
) -> ModelWrapper:
    """Pull ``uri`` into the cache, verify it, and return the loaded wrapper.

    ``name`` (when given) must be the model the artifact holds; ``sha256`` pins its exact bytes.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    artifact = pull_to_cache(uri, cache, TrustPolicy(sha256.lower() if sha256 else None, trust_unsigned))
    return open_artifact(artifact, cache, expected_name=name, device=device, settings=settings)


def load_model(entry: ModelEntry, config: ModelConfig, cache_dir: str | Path | None) -> ModelWrapper:
    """What the registry calls for a model whose configured ``source`` is an artifact."""
    return load_artifact(
        config.source or "",
        name=entry.name,
        cache_dir=cache_dir,
        sha256=config.sha256,
        trust_unsigned=config.trust_unsigned,
        device=config.device,
        settings=config.settings,
    )
