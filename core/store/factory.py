"""Which store serves a URI: ``gs://`` a GCS bucket, anything else a local folder."""

from __future__ import annotations

from .backend import ArtifactStore
from .local import LocalStore
from .uri import StoreURI, parse_store_uri


def open_store(uri: str | StoreURI) -> ArtifactStore:
    """The store behind ``uri`` (google-cloud-storage is imported only when a bucket is used)."""
    parsed = parse_store_uri(uri) if isinstance(uri, str) else uri
    if parsed.scheme == "gs":
        from .gcs import GCSStore

        return GCSStore(parsed)
    return LocalStore(parsed)
