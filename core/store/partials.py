"""Temporary files of downloads in progress, and the removal of those whose writer died.

A download streams into ``.partial-<random>`` beside its destination and holds an exclusive
``flock`` on it until the file has been renamed into place. The kernel drops that lock when the
writer exits, however it exits (SIGKILL and OOM kills included), so a partial file on which
nobody holds a lock is *stale*: its writer is gone and nothing will ever finish it. That test
needs no clock (a slow live download is never mistaken for a dead one) and no pid (pids are
reused, and differ between containers sharing a cache volume).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

PREFIX = ".partial-"


@contextmanager
def partial_file(folder: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A new temporary file in ``folder``, locked while the block runs; rename it into place
    inside the block (it is deleted at the end otherwise)."""
    while True:
        handle = tempfile.NamedTemporaryFile(dir=folder, prefix=PREFIX, delete=False)
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        if os.fstat(handle.fileno()).st_nlink:
            break
        handle.close()  # a sweep removed it between its creation and our lock: take another
    path = Path(handle.name)
    try:
        with handle:
            yield handle, path
    finally:
        path.unlink(missing_ok=True)


def remove_stale_partials(folder: Path) -> None:
    """Delete the partial files in ``folder`` that no live download holds."""
    for path in folder.glob(PREFIX + "*"):
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone already (renamed into place, or swept by another process)
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.path.samestat(os.fstat(descriptor), os.lstat(path)):
                path.unlink()
                log.info("removed %s, left by a download that did not finish", path)
        except OSError:  # BlockingIOError: a live download holds it; FileNotFoundError: renamed meanwhile
            continue
        finally:
            os.close(descriptor)
