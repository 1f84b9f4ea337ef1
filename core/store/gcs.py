"""A store in a Google Cloud Storage bucket (or an emulator named by ``STORAGE_EMULATOR_HOST``).

Transient failures (connection errors, 429, 5xx, requests that time out) are retried with
exponential backoff for up to ``MODELDEPLOY_GCS_RETRY_DEADLINE`` seconds (default 30); what still
fails becomes ``StoreUnavailableError`` so callers can fall back to a verified cached copy.

That number bounds a whole operation against a bucket that does not answer: each request waits
at most half of it for an answer (to connect, and between two reads of a response), and no retry
starts after the first half. The client's defaults are 60 s per request and a retry deadline
checked only between attempts, so a bucket that accepts connections and never answers used to fail
after one 60 s attempt with a message saying 30 s. A healthy transfer is never cut short: only
silence counts, however long a big upload or download takes.

Create-only writes use the generation precondition ``if_generation_match=0``; a conditional
replace uses ``if_generation_match=<the generation read>``.
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
from .backend import ArtifactStore, ObjectNotFoundError, Snapshot
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
        #: Seconds after which an operation against a bucket that does not answer has failed.
        self.deadline = float(os.environ.get(RETRY_DEADLINE_ENV, "30"))
        #: Each attempt, and the window in which attempts start, get half of it (see the module doc).
        self.timeout = self.deadline / 2
        self.retry = DEFAULT_RETRY.with_timeout(self.timeout)
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
            blob = self.bucket.get_blob(self.blob_name(key), retry=self.retry, timeout=self.timeout)
        if blob is None:
            raise ObjectNotFoundError(f"{self.describe(key)} does not exist")
        return int(blob.size)

    def upload(self, key: str, path: Path, *, create_only: bool = False, on_bytes: OnBytes | None = None) -> None:
        blob = self.bucket.blob(self.blob_name(key), chunk_size=UPLOAD_CHUNK_BYTES)
        size = Path(path).stat().st_size
        with open(path, "rb") as source, self._errors(key):
            blob.upload_from_file(
                CountingReader(source, on_bytes), size=size, retry=self.retry, timeout=self.timeout,
                if_generation_match=0 if create_only else None,
            )

    def download(self, key: str, target: BinaryIO) -> None:
        with self._errors(key):
            self.bucket.blob(self.blob_name(key)).download_to_file(target, retry=self.retry, timeout=self.timeout)

    def read_bytes(self, key: str) -> bytes:
        with self._errors(key):
            return self.bucket.blob(self.blob_name(key)).download_as_bytes(retry=self.retry, timeout=self.timeout)

    def write_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        with self._errors(key):
            self.bucket.blob(self.blob_name(key)).upload_from_string(
                data, retry=self.retry, timeout=self.timeout, if_generation_match=0 if create_only else None
            )

    def read_snapshot(self, key: str) -> Snapshot:
        with self._errors(key, conflict="changed while it was read"):
            blob = self.bucket.get_blob(self.blob_name(key), retry=self.retry, timeout=self.timeout)
            if blob is None:
                return Snapshot(None, 0)
            data = blob.download_as_bytes(if_generation_match=blob.generation, retry=self.retry, timeout=self.timeout)
        return Snapshot(data, blob.generation)

    def replace_if_unchanged(self, key: str, data: bytes, snapshot: Snapshot) -> None:
        with self._errors(key, conflict="changed since it was read"):
            self.bucket.blob(self.blob_name(key)).upload_from_string(
                data, retry=self.retry, timeout=self.timeout, if_generation_match=snapshot.generation
            )

    def list(self, folder: str) -> list[str]:
        prefix = self.blob_name(folder) + "/"
        with self._errors(folder):
            blobs = list(self.bucket.client.list_blobs(self.bucket, prefix=prefix, delimiter="/", retry=self.retry,
                                                       timeout=self.timeout))
        return sorted(blob.name[len(prefix):] for blob in blobs)

    @contextmanager
    def _errors(self, key: str, conflict: str = "already exists; history objects are create-only") -> Iterator[None]:
        """Translate client exceptions into the store's own, each naming the object."""
        where = key if key.startswith("gs://") else self.describe(key)
        try:
            yield
        except api_exceptions.NotFound:
            raise ObjectNotFoundError(f"{where} does not exist") from None
        except api_exceptions.PreconditionFailed:
            raise ArtifactConflictError(f"{where} {conflict}") from None
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(
                f"bucket {self.uri.location!r} is unreachable ({where}; an operation gives up after at most "
                f"{self.deadline:g} s ({RETRY_DEADLINE_ENV})): {exc}"
            ) from exc
        except (api_exceptions.GoogleAPICallError, GoogleAuthError) as exc:
            raise StoreError(f"{where}: {type(exc).__name__}: {exc}") from exc
