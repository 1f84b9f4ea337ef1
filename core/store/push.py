"""Publishing an artifact file to a store: an immutable history version, then the pointer to it.

Layout under the store prefix::

    historic/<id>_<name>.dill                    every version ever pushed, create-only
    historic/<id>_<name>.manifest.json           its manifest, create-only
    <name>.dill.current.json                     the current version: {"version": "historic/<id>_<name>.dill"}

(``.pretrained.tar`` instead of ``.dill`` for the pickle-free format.) A version id is the UTC
time of the push plus 32 random bits (``20240131T120000.123456Z-1a2b3c4d``), so pushes in the
same microsecond get distinct versions. See ``current.py`` for what the pointer guarantees.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ArtifactVerificationError, StoreError
from ..names import MODEL_NAME_PATTERN
from .current import make_current
from .factory import open_store
from .manifest import Manifest, build_manifest, check_identity
from .signing import current_key, sign, signature_status
from .streams import OnBytes, sha256_file
from .uri import EXTENSIONS, HISTORY_FOLDER, StoreURI, artifact_format, manifest_name, stem

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"


@dataclass(frozen=True)
class PushResult:
    history_uri: str
    current_uri: str
    manifest: Manifest
    #: The history version that was current before this push (None: none, or an old-layout copy).
    replaced_uri: str | None = None


def local_manifest(path: Path) -> Manifest:
    """The manifest for a local artifact file: its sidecar, checked against the bytes, or a new one
    (named after the file, which then must be ``<model>.dill`` or ``<model>.pretrained.tar``)."""
    sha256, size = sha256_file(path)
    sidecar = path.parent / manifest_name(path.name)
    if not sidecar.is_file():
        name = stem(path.name)
        if not MODEL_NAME_PATTERN.match(name):
            raise StoreError(f"{path.name!r} has no manifest and {name!r} is not a model name; export it again")
        return build_manifest(name, artifact_format(path.name), sha256, size)
    manifest = Manifest.from_json(sidecar.read_bytes(), str(sidecar))
    check_identity(manifest, path.name, str(sidecar), None)
    if (manifest.sha256, manifest.size) != (sha256, size):
        raise ArtifactVerificationError(f"refusing to push {path}: the file does not match its manifest {sidecar}")
    if signature_status(manifest) == "invalid":
        raise ArtifactVerificationError(f"refusing to push {path}: the signature in {sidecar} is invalid")
    return manifest


def push(path: Path, destination: str | StoreURI, on_bytes: OnBytes | None = None,
         now: datetime | None = None) -> PushResult:
    """Upload ``path`` as a new history version and make it the current one.

    The manifest is (re-)signed with ``MODELDEPLOY_SIGNING_KEY`` when it is set. The version is
    complete (artifact, then manifest, both create-only) before the pointer names it, so a push
    that dies midway leaves the previous version current.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path} is not a file")
    manifest = local_manifest(path)
    if current_key() is not None:
        manifest = sign(manifest)
    store = open_store(destination)
    extension = EXTENSIONS[manifest.format]
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    version_id = f"{moment.strftime(TIMESTAMP_FORMAT)}-{secrets.token_hex(4)}"
    filename = f"{manifest.name}{extension}"
    history_key = f"{HISTORY_FOLDER}/{version_id}_{filename}"
    store.upload(history_key, path, create_only=True, on_bytes=on_bytes)
    store.write_bytes(manifest_name(history_key), manifest.to_json(), create_only=True)
    replaced = make_current(store, filename, history_key)
    return PushResult(store.describe(history_key), store.describe(filename), manifest,
                      store.describe(replaced) if replaced else None)
