"""Verified local copies: downloads land in a temporary file, are hashed while they stream, and are
renamed into place only after verification, so an interrupted or rejected download is never used.

The cache (``cache_dir`` in config.yaml, else ``MODELDEPLOY_CACHE_DIR``, else
``~/.cache/modeldeploy``) mirrors the store: ``<cache>/gs/<bucket>/<prefix>/<file>`` or
``<cache>/file/<hash of folder>/<file>``. A cached copy is re-verified on every use; when the store
is unreachable a cached copy that still verifies stands in, and the log says so. A cached copy
whose bytes no longer match its manifest is downloaded again when the store is reachable.

A name with a current-version pointer in the store (see ``current.py``) is downloaded from the
version the pointer names, with that version's manifest: one whole pair.

What an artifact holds (model, format) is read from its manifest, never from its file name: a
pulled ``anything.bin`` loads like the ``sentiment.dill`` it came from. Only a file without a
manifest (trusted by a pinned sha256 or ``trust_unsigned``) relies on its extension for a format.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArtifactVerificationError, StoreUnavailableError
from .backend import ArtifactStore, ObjectNotFoundError
from .current import resolve
from .factory import open_store
from .manifest import Manifest, artifact_format_of, check_identity
from .partials import partial_file, remove_stale_partials
from .streams import HashingWriter, OnBytes, sha256_file
from .uri import StoreURI, manifest_name, split_artifact_uri
from .verification import TrustPolicy, verify

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "MODELDEPLOY_CACHE_DIR"


@dataclass(frozen=True)
class VerifiedArtifact:
    """A local artifact file that passed verification (and how)."""

    path: Path
    format: str
    manifest: Manifest | None
    #: How it is trusted: "verified by signature (key id ...)", "verified by pinned sha256", "NOT verified (...)"
    verification: str
    sha256: str


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeploy"


def cache_folder(cache_dir: Path, store_uri: StoreURI) -> Path:
    """Where a store's artifacts are cached; built only from checked URI parts."""
    if store_uri.scheme == "gs":
        return cache_dir.joinpath("gs", store_uri.location, *filter(None, store_uri.prefix.split("/")))
    return cache_dir / "file" / hashlib.sha256(store_uri.location.encode()).hexdigest()[:16]


def read_manifest(store: ArtifactStore, filename: str, expected_name: str | None = None) -> Manifest | None:
    """The manifest next to ``filename`` in ``store``; None when there is none."""
    key = manifest_name(filename)
    try:
        data = store.read_bytes(key)
    except ObjectNotFoundError:
        return None
    manifest = Manifest.from_json(data, store.describe(key))
    check_identity(manifest, filename, store.describe(key), expected_name)
    return manifest


def fetch(
    store: ArtifactStore,
    filename: str,
    destination: Path,
    policy: TrustPolicy,
    on_bytes: OnBytes | None = None,
) -> VerifiedArtifact:
    """Download ``filename`` (its current version, when a pointer names one) to ``destination`` and
    its manifest beside it, verified, atomically."""
    key = resolve(store, filename)
    return _download(store, key, read_manifest(store, key), destination, policy, on_bytes)


def _download(store: ArtifactStore, key: str, manifest: Manifest | None, destination: Path,
              policy: TrustPolicy, on_bytes: OnBytes | None = None) -> VerifiedArtifact:
    """Stream ``key`` into a locked partial file beside ``destination``, verify it, rename it into
    place; partial files that earlier, killed downloads left in that folder are removed first."""
    format_name = artifact_format_of(key, manifest)
    if manifest is not None:  # the copy's name must not contradict what it holds either
        check_identity(manifest, destination.name, store.describe(manifest_name(key)), None)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(destination.parent)
    label = store.describe(key)
    with partial_file(destination.parent) as (handle, partial):
        writer = HashingWriter(handle, on_bytes)
        store.download(key, writer)
        handle.flush()
        os.fsync(handle.fileno())
        verification = verify(label, manifest, writer.hexdigest(), writer.size, policy)
        sidecar = destination.parent / manifest_name(destination.name)
        if manifest is not None:
            _write_atomically(sidecar, manifest.to_json())
        else:
            sidecar.unlink(missing_ok=True)
        os.replace(partial, destination)
    log.info("fetched %s to %s (%s)", label, destination, verification)
    return VerifiedArtifact(destination, format_name, manifest, verification, writer.hexdigest())


def verify_local(path: Path, policy: TrustPolicy, expected_name: str | None = None,
                 label: str | None = None) -> VerifiedArtifact:
    """Verify a local artifact file against the manifest beside it (if any) and the policy;
    ``label`` names it in errors (the source the user gave, for a cached copy)."""
    sidecar = path.parent / manifest_name(path.name)
    manifest = None
    if sidecar.is_file():
        manifest = Manifest.from_json(sidecar.read_bytes(), str(sidecar))
        check_identity(manifest, path.name, str(sidecar), expected_name)
    sha256, size = sha256_file(path)
    verification = verify(label or str(path), manifest, sha256, size, policy)
    return VerifiedArtifact(path, artifact_format_of(path.name, manifest), manifest, verification, sha256)


def pull_to_cache(source: str, cache_dir: Path | None, policy: TrustPolicy,
                  expected_name: str | None = None) -> VerifiedArtifact:
    """The verified cached copy of the artifact ``source`` names, downloading it when needed.

    ``expected_name`` (when given) is the model the artifact's manifest must describe.
    """
    store_uri, filename = split_artifact_uri(source)
    store = open_store(store_uri)
    target = cache_folder(Path(cache_dir) if cache_dir else default_cache_dir(), store_uri) / filename
    try:
        key = resolve(store, filename)
        remote = read_manifest(store, key, expected_name)
        return _intact_cached_copy(target, remote, policy, source) or _download(store, key, remote, target, policy)
    except StoreUnavailableError as exc:
        if not target.is_file():
            raise StoreUnavailableError(f"{exc}; no cached copy of {source} in {target.parent}") from exc
        try:
            cached = verify_local(target, policy, expected_name, label=f"{source} (cached copy {target})")
        except ArtifactVerificationError as bad:
            raise StoreUnavailableError(f"{exc}; the cached copy is unusable: {bad}") from exc
        log.warning("store unreachable (%s); using the verified cached copy %s", exc, target)
        return cached


def _intact_cached_copy(target: Path, remote: Manifest | None, policy: TrustPolicy,
                        label: str) -> VerifiedArtifact | None:
    """The cached copy, when it holds exactly what the store's manifest describes; None when it is
    missing, outdated or damaged (a damaged copy is never trusted again: it is downloaded anew)."""
    if remote is None or not target.is_file() or _cached_manifest(target) != remote:
        return None
    sha256, size = sha256_file(target)
    if (sha256, size) != (remote.sha256, remote.size):
        log.warning("the cached copy %s is damaged (its bytes no longer match its manifest); downloading it again",
                    target)
        return None
    log.info("artifact %s is already cached at %s", label, target)
    return VerifiedArtifact(target, remote.format, remote, verify(label, remote, sha256, size, policy), sha256)


def _cached_manifest(path: Path) -> Manifest | None:
    sidecar = path.parent / manifest_name(path.name)
    try:
        return Manifest.from_json(sidecar.read_bytes(), str(sidecar))
    except (OSError, ArtifactVerificationError):
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    with partial_file(path.parent) as (handle, partial):
        handle.write(data)
        handle.flush()
        os.replace(partial, path)
