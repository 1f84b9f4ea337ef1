"""The current version of an artifact: a small pointer object naming one immutable history version.

``<name>.dill`` in a store is a name, not an object: ``<name>.dill.current.json`` holds
``{"version": "historic/<id>_<name>.dill"}``, and the artifact and manifest it names were both
written (create-only) before it. Replacing the pointer is one atomic write, so a reader always
gets a whole pair, the previous one or the new one, and a push that dies before the pointer
leaves the previous version current.

Pointers are replaced by compare-and-swap: a push that finds the pointer changed since it read
it (another push won the race) reads it again and retries, so every push ends current in turn
and knows which version it replaced.

Stores written before pointers existed hold the current pair under the name itself
(``<name>.dill`` + ``<name>.manifest.json``): without a pointer, the name is read as an object.
"""

from __future__ import annotations

import json
import random
import time

from ..errors import ArtifactConflictError, ArtifactVerificationError
from .backend import ArtifactStore, ObjectNotFoundError
from .uri import HISTORY_FOLDER, check_key

POINTER_SUFFIX = ".current.json"
#: Compare-and-swap rounds before a push gives up (each round, one of the racing pushes wins).
SWAP_ATTEMPTS = 20


def pointer_key(filename: str) -> str:
    """``sentiment.dill`` -> ``sentiment.dill.current.json``."""
    return check_key(filename + POINTER_SUFFIX)


def resolve(store: ArtifactStore, filename: str) -> str:
    """The key holding the bytes ``filename`` names: the version its pointer names, or itself."""
    key = pointer_key(filename)
    try:
        data = store.read_bytes(key)
    except ObjectNotFoundError:
        return filename
    return _parse(data, filename, store.describe(key))


def make_current(store: ArtifactStore, filename: str, version: str) -> str | None:
    """Point ``filename`` at the history key ``version``; return the version it replaced (None:
    none, an old-layout current copy, or a pointer too damaged to say, which this one repairs)."""
    key = pointer_key(filename)
    for attempt in range(SWAP_ATTEMPTS):
        try:
            snapshot = store.read_snapshot(key)
            store.replace_if_unchanged(key, json.dumps({"version": version}).encode() + b"\n", snapshot)
        except ArtifactConflictError:
            time.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # de-synchronise the racing pushes
            continue
        try:
            return None if snapshot.data is None else _parse(snapshot.data, filename, store.describe(key))
        except ArtifactVerificationError:
            return None
    raise ArtifactConflictError(
        f"{store.describe(key)} kept changing under {SWAP_ATTEMPTS} concurrent pushes; "
        f"{store.describe(version)} was pushed but is not current (push again, or pin it)"
    )


def _parse(data: bytes, filename: str, where: str) -> str:
    """The history key a pointer names; it must be a version of ``filename`` in the history folder."""
    try:
        version = json.loads(data)["version"]
    except (ValueError, TypeError, KeyError):
        version = None
    if not (isinstance(version, str) and version.startswith(f"{HISTORY_FOLDER}/")
            and version.endswith(f"_{filename}") and version.count("/") == 1):
        raise ArtifactVerificationError(f"pointer {where} does not name a history version of {filename!r}: {data[:200]!r}")
    return check_key(version)
