"""One interface for every store: a local folder and a GCS bucket behave the same to the rest.

Keys are ``/``-separated names relative to the store's prefix (``sentiment.dill.current.json``,
``historic/<id>_sentiment.dill``); every implementation checks them with ``uri.check_key`` so
nothing outside the prefix can be read or written.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import StoreError
from .streams import OnBytes
from .uri import StoreURI


class ObjectNotFoundError(StoreError):
    """The store answered, and the object is not there."""


@dataclass(frozen=True)
class Snapshot:
    """A small object as read, plus what a conditional write needs to tell whether it changed since."""

    data: bytes | None  # None: the object did not exist
    generation: object  # the GCS generation; for a local folder, the bytes themselves


class ArtifactStore(ABC):
    """Streamed object I/O under one prefix. Big objects go file-to-store, never whole into memory."""

    def __init__(self, uri: StoreURI) -> None:
        self.uri = uri

    @abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes of ``key`` (ObjectNotFoundError when missing)."""

    @abstractmethod
    def upload(self, key: str, path: Path, *, create_only: bool = False, on_bytes: OnBytes | None = None) -> None:
        """Stream the file at ``path`` to ``key``; ``create_only`` fails with ArtifactConflictError if it exists."""

    @abstractmethod
    def download(self, key: str, target: BinaryIO) -> None:
        """Stream ``key`` into ``target`` (anything with ``write``; wrap it to hash or count)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """A small object (a manifest) in one piece."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        """Write a small object; ``create_only`` as for ``upload``."""

    @abstractmethod
    def read_snapshot(self, key: str) -> Snapshot:
        """A small object (a pointer) for a later ``replace_if_unchanged``; ``data`` None when missing."""

    @abstractmethod
    def replace_if_unchanged(self, key: str, data: bytes, snapshot: Snapshot) -> None:
        """Atomically write a small object unless it changed since ``snapshot`` (ArtifactConflictError)."""

    @abstractmethod
    def list(self, folder: str) -> list[str]:
        """File names directly under ``folder`` (empty when the folder does not exist)."""

    def describe(self, key: str) -> str:
        return self.uri.child(key)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"

