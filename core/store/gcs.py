"""A store in a Google Cloud Storage bucket (or an emulator named by ``STORAGE_EMULATOR_HOST``).

Transient failures (connection errors, 429, 5xx) are retried with exponential backoff for up
to ``MODELDEPLOY_GCS_RETRY_DEADLINE`` seconds (default 30); what still fails becomes
``StoreUnavailableError`` so callers can fall back to a verified cached copy. Create-only writes
use the generation precondition ``if_generation_match=0``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import requests
from google.api_core import exceptions as api_exceptions
from google.auth.exceptions import GoogleAuthError
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from ..errors import ArtifactConflictError, StoreError, StoreUnavailableError
from .backend import ArtifactStore, ObjectNotFoundError
from .streams import CountingReader, OnBytes
from .uri import StoreURI, check_key

RETRY_DEADLINE_ENV = "MODELDEPLOY_GCS_RETRY_DEADLINE"
#: Resumable uploads send (and buffer) one chunk at a time; a multiple of 256 KiB.
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024

_UNAVAILABLE = (
    api_exceptions.RetryError,
    api_exceptions.ServerError,
    api_exceptions.TooManyRequests,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    TimeoutError,
)


class GCSStore(ArtifactStore):
    """Objects are blobs named ``<prefix>/<key>`` in one bucket."""

    def __init__(self, uri: StoreURI) -> None:
        super().__init__(uri)
        deadline = float(os.environ.get(RETRY_DEADLINE_ENV, "30"))
        self.retry = DEFAULT_RETRY.with_deadline(deadline)
        self._bucket: Any = None

    @property
    def bucket(self) -> Any:
        if self._bucket is None:
            with self._errors(f"gs://{self.uri.location}"):
                self._bucket = storage.Client().bucket(self.uri.location)
        return self._bucket

    def blob_name(self, key: str) -> str:
        check_key(key)
        return f"{self.uri.prefix}/{key}" if self.uri.prefix else key

    def size(self, key: str) -> int:
        with self._errors(key):
            blob = self.bucket.get_blob(self.blob_name(key), retry=self.retry)
        if blob is None:
            raise ObjectNotFoundError(f"{self.describe(key)} does not exist")
        return int(blob.size)

    def upload(self, key: str, path: Path, *, create_only: bool = False, on_bytes: OnBytes | None = None) -> None:
        blob = self.bucket.blob(self.blob_name(key), chunk_size=UPLOAD_CHUNK_BYTES)
        size = Path(path).stat().st_size
        with open(path, "rb") as source, self._errors(key):
            blob.upload_from_file(
                CountingReader(source, on_bytes), size=size, retry=self.retry,
                if_generation_match=0 if create_only else None,
            )

    def download(self, key: str, target: BinaryIO) -> None:
        with self._errors(key):
            self.bucket.blob(self.blob_name(key)).download_to_file(target, retry=self.retry)

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self.bucket.blob(self.blob_name(key)).download_as_bytes(retry=self.retry)

    def write_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        with self._errors(key):
            self.bucket.blob(self.blob_name(key)).upload_from_string(
                data, retry=self.retry, if_generation_match=0 if create_only else None
            )

    def copy(self, source_key: str, target_key: str) -> None:
        with self._errors(source_key):
            source = self.bucket.blob(self.blob_name(source_key))
            self.bucket.copy_blob(source, self.bucket, self.blob_name(target_key), retry=self.retry)

    def list(self, folder: str) -> list[str]:
        prefix = self.blob_name(folder) + "/"
        with self._errors(folder):
            blobs = list(self.bucket.client.list_blobs(self.bucket, prefix=prefix, delimiter="/", retry=self.retry))
        return sorted(blob.name[len(prefix):] for blob in blobs)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate client exceptions into the store's own, each naming the object."""
        where = key if key.startswith("gs://") else self.describe(key)
        try:
            yield
        except api_exceptions.NotFound:
            raise ObjectNotFoundError(f"{where} does not exist") from None
        except api_exceptions.PreconditionFailed:
            raise ArtifactConflictError(f"{where} already exists; history objects are create-only") from None
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"bucket {self.uri.location!r} is unreachable ({where}): {exc}") from exc
        except (api_exceptions.GoogleAPICallError, GoogleAuthError) as exc:
            raise StoreError(f"{where}: {type(exc).__name__}: {exc}") from exc
