"""Model artifacts: bytes and trust. Dill or pickle-free ``pretrained`` exports in a local folder
or a GCS bucket, with immutable history, manifests, HMAC signatures and verified local caching.

The store knows nothing above it: it verifies and hands back files (``pull_to_cache``), the
object a verified dill artifact holds (``unpickle_artifact``) or the folder a pretrained one
unpacks to (``extract_pretrained``). Turning those into a served model is
:mod:`modeldeploy.loading`'s job::

    import modeldeploy
    wrapper = modeldeploy.load("sentiment", source="gs://bucket/models/sentiment.dill", sha256="...")

See docs/store.md for the layout and the trust model.
"""

from __future__ import annotations

from .artifacts import (
    PluginOrigin,
    PretrainedFiles,
    check_export_target,
    export_artifact,
    extract_pretrained,
    unpickle_artifact,
)
from .backend import ArtifactStore
from .cache import VerifiedArtifact, default_cache_dir, fetch, pull_to_cache
from .current import resolve
from .factory import open_store
from .history import Version, history
from .manifest import Manifest
from .push import PushResult, push
from .uri import is_artifact_source, split_artifact_uri
from .verification import TrustPolicy

__all__ = [
    "ArtifactStore",
    "Manifest",
    "PluginOrigin",
    "PretrainedFiles",
    "PushResult",
    "TrustPolicy",
    "VerifiedArtifact",
    "Version",
    "check_export_target",
    "default_cache_dir",
    "export_artifact",
    "extract_pretrained",
    "fetch",
    "history",
    "is_artifact_source",
    "open_store",
    "pull_to_cache",
    "push",
    "resolve",
    "split_artifact_uri",
    "unpickle_artifact",
]
