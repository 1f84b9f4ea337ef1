"""Listing the versions of a model in a store, newest first, so a server can pin one."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ArtifactVerificationError
from .backend import ArtifactStore
from .cache import read_manifest
from .current import resolve
from .factory import open_store
from .manifest import Manifest
from .signing import signature_status
from .uri import EXTENSIONS, HISTORY_FOLDER, StoreURI

#: ``20240131T120000.123456Z-1a2b3c4d`` (this project; versions pushed before the random part
#: existed lack it) or ``2024_01_31`` (the seed app's daily copies).
_VERSION = r"(?P<timestamp>\d{8}T\d{6}\.\d{6}Z|\d{4}_\d{2}_\d{2})(?:-[0-9a-f]{8})?"


@dataclass(frozen=True)
class Version:
    timestamp: str
    uri: str
    format: str
    manifest: Manifest | None
    #: valid / invalid / unsigned / unknown-key / no manifest / bad manifest
    signature: str
    current: bool


def history(name: str, store_uri: str | StoreURI) -> list[Version]:
    """Every history version of ``name`` in the store, newest first."""
    store = open_store(store_uri)
    extensions = "|".join(map(re.escape, EXTENSIONS.values()))
    pattern = re.compile(rf"^{_VERSION}_{re.escape(name)}(?P<extension>{extensions})$")
    current = {fmt: _manifest_or_none(store, resolve(store, f"{name}{extension}"))[0]
               for fmt, extension in EXTENSIONS.items()}
    versions = []
    for filename in store.list(HISTORY_FOLDER):
        match = pattern.match(filename)
        if match is None:
            continue
        fmt = next(f for f, e in EXTENSIONS.items() if e == match["extension"])
        key = f"{HISTORY_FOLDER}/{filename}"
        manifest, signature = _manifest_or_none(store, key)
        live = current[fmt]
        versions.append(Version(
            timestamp=match["timestamp"],
            uri=store.describe(key),
            format=fmt,
            manifest=manifest,
            signature=signature,
            current=bool(manifest and live and live.sha256 == manifest.sha256),
        ))
    return sorted(versions, key=lambda v: (v.timestamp.replace("_", ""), v.uri), reverse=True)


def _manifest_or_none(store: ArtifactStore, key: str) -> tuple[Manifest | None, str]:
    try:
        manifest = read_manifest(store, key)
    except ArtifactVerificationError:
        return None, "bad manifest"
    return manifest, signature_status(manifest) if manifest else "no manifest"
