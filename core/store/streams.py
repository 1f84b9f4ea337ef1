"""Chunked streaming helpers: artifacts are copied and hashed a chunk at a time, never held whole."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

#: Called with the number of bytes just transferred (drives the CLI's progress bars).
OnBytes = Callable[[int], None]

CHUNK_BYTES = 1024 * 1024


def copy_stream(source: BinaryIO, target: BinaryIO, on_bytes: OnBytes | None = None) -> int:
    """Copy ``source`` to ``target`` chunk by chunk; return the byte count."""
    total = 0
    while chunk := source.read(CHUNK_BYTES):
        target.write(chunk)
        total += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    return total


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in chunks."""
    writer = HashingWriter()
    with open(path, "rb") as source:
        copy_stream(source, writer)
    return writer.hexdigest(), writer.size


class HashingWriter:
    """A write-only file object that hashes (and optionally forwards) what is written to it."""

    def __init__(self, target: BinaryIO | None = None, on_bytes: OnBytes | None = None) -> None:
        self._target = target
        self._on_bytes = on_bytes
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        if self._target is not None:
            self._target.write(view)
        self.size += len(view)
        if self._on_bytes is not None:
            self._on_bytes(len(view))
        return len(view)

    def flush(self) -> None:
        if self._target is not None:
            self._target.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class CountingReader:
    """A read-side wrapper that reports progress; everything else is the wrapped file's."""

    def __init__(self, source: BinaryIO, on_bytes: OnBytes | None) -> None:
        self._source = source
        self._on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)
