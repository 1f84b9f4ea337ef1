"""A store in a local folder: same layout as a bucket, atomic renames and a folder lock instead of
generations."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import ArtifactConflictError, StoreError
from .backend import ArtifactStore, ObjectNotFoundError, Snapshot
from .streams import OnBytes, copy_stream
from .uri import check_key

#: Published objects are readable by the server's user whoever pushed them (temp files start 0600).
PUBLISHED_MODE = 0o644


class LocalStore(ArtifactStore):
    """Objects are files under the store folder. Writes go to a temporary file first and are then
    published atomically: ``os.replace`` to overwrite, ``os.link`` for create-only (it fails when
    the name exists, so a history entry is never overwritten, nor ever seen half-written). A
    conditional replace compares and renames under an exclusive ``flock`` on the object's folder."""

    @property
    def root(self) -> Path:
        return Path(self.uri.location)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{self.describe(key)} does not exist") from None

    def upload(self, key: str, path: Path, *, create_only: bool = False, on_bytes: OnBytes | None = None) -> None:
        with open(path, "rb") as source, self._publishing(key, create_only) as target:
            copy_stream(source, target, on_bytes)

    def download(self, key: str, target: BinaryIO) -> None:
        try:
            with open(self.path(key), "rb") as source:
                copy_stream(source, target)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{self.describe(key)} does not exist") from None

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{self.describe(key)} does not exist") from None

    def write_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        with self._publishing(key, create_only) as target:
            target.write(data)

    def read_snapshot(self, key: str) -> Snapshot:
        data = self._read_or_none(key)
        return Snapshot(data, data)

    def replace_if_unchanged(self, key: str, data: bytes, snapshot: Snapshot) -> None:
        with self._publishing(key, create_only=False, unless_changed_since=snapshot) as target:
            target.write(data)

    def list(self, folder: str) -> list[str]:
        if not self.root.is_dir():
            raise ObjectNotFoundError(f"store {self.uri} does not exist (no folder {self.root})")
        directory = self.path(folder)
        if not directory.is_dir():
            return []
        return sorted(entry.name for entry in directory.iterdir() if entry.is_file())

    def _read_or_none(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    @staticmethod
    @contextmanager
    def _locked(folder: Path) -> Iterator[None]:
        """An exclusive lock on ``folder``, released when the block ends or the process dies."""
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    @contextmanager
    def _publishing(self, key: str, create_only: bool,
                    unless_changed_since: Snapshot | None = None) -> Iterator[BinaryIO]:
        final = self.path(key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create folder for {self.describe(key)}: {exc.strerror}") from None
        handle = tempfile.NamedTemporaryFile(dir=final.parent, prefix=".upload-", delete=False)
        temporary = Path(handle.name)
        try:
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, PUBLISHED_MODE)
            if create_only:
                try:
                    os.link(temporary, final)
                except FileExistsError:
                    raise ArtifactConflictError(
                        f"{self.describe(key)} already exists; history objects are create-only"
                    ) from None
            elif unless_changed_since is not None:
                with self._locked(final.parent):
                    if self._read_or_none(key) != unless_changed_since.generation:
                        raise ArtifactConflictError(f"{self.describe(key)} changed since it was read")
                    os.replace(temporary, final)
            else:
                os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
