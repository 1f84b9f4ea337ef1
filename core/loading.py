"""The one path from a model name and a source to a ready wrapper.

``modeldeploy.load()``, the registry (every served model) and the CLI all load through
:func:`load`. A source is a hub id, a model folder, or a store artifact (``gs://`` or
``file://`` URI, or a local artifact file of any name). An artifact is identified by its
manifest: the model it holds is read there (and checked against the name asked for), never
guessed from the file name; nothing is unpickled before the store verified the bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import store
from .devices import resolve_device, validate_device
from .errors import StoreError
from .plugins import Catalog, get_catalog
from .wrapper import ModelWrapper


def load(
    name: str,
    source: str | None = None,
    device: str = "auto",
    settings: Mapping[str, Any] | None = None,
    *,
    sha256: str | None = None,
    trust_unsigned: bool = False,
    cache_dir: str | Path | None = None,
    catalog: Catalog | None = None,
) -> ModelWrapper:
    """Instantiate and load the model ``name`` from ``source`` (default: the plugin's own).

    For an artifact source, ``sha256`` pins its exact bytes and ``trust_unsigned`` accepts one
    that cannot be verified (see docs/store.md); ``cache_dir`` is where pulled copies live.
    """
    catalog = catalog or get_catalog()
    entry = catalog.entry(name)
    source = source or entry.wrapper_class.default_source
    if store.is_artifact_source(source):
        return load_artifact(source, name=name, device=device, settings=settings, sha256=sha256,
                             trust_unsigned=trust_unsigned, cache_dir=cache_dir, catalog=catalog)
    return entry.wrapper_class(source=source, device=device, settings=settings).ensure_loaded()


def load_artifact(
    uri: str,
    *,
    name: str | None = None,
    device: str = "auto",
    settings: Mapping[str, Any] | None = None,
    sha256: str | None = None,
    trust_unsigned: bool = False,
    cache_dir: str | Path | None = None,
    catalog: Catalog | None = None,
) -> ModelWrapper:
    """Pull ``uri`` into the cache, verify it, and return the loaded wrapper it holds.

    ``name`` (when given) must be the model the artifact's manifest describes.
    """
    cache = Path(cache_dir) if cache_dir else store.default_cache_dir()
    policy = store.TrustPolicy(sha256.lower() if sha256 else None, trust_unsigned)
    artifact = store.pull_to_cache(uri, cache, policy, expected_name=name)
    if artifact.format == "dill":
        wrapper = _loaded_wrapper(store.unpickle_artifact(artifact), artifact, name)
        if settings:
            wrapper.settings = wrapper.resolve_settings({**wrapper.settings, **settings})
        return _place(wrapper, device)
    files = store.extract_pretrained(artifact, cache)
    if name is not None and files.model != name:
        raise StoreError(f"artifact {artifact.path} holds model {files.model!r}, not {name!r}")
    wrapper_class = (catalog or get_catalog()).entry(files.model).wrapper_class
    merged = {**files.settings, **(settings or {})}
    return wrapper_class(source=str(files.folder), device=device, settings=merged).ensure_loaded()


def _loaded_wrapper(unpickled: Any, artifact: store.VerifiedArtifact, name: str | None) -> ModelWrapper:
    """The unpickled object, if it is a loaded wrapper of the expected model."""
    label = str(artifact.path)
    if not isinstance(unpickled, ModelWrapper) or not unpickled.is_loaded:
        raise StoreError(f"artifact {label} does not hold a loaded ModelWrapper (got {type(unpickled).__name__})")
    expected = name or (artifact.manifest.name if artifact.manifest else None)
    if expected is not None and unpickled.name != expected:
        raise StoreError(f"artifact {label} holds model {unpickled.name!r}, not {expected!r}")
    return unpickled


def _place(wrapper: ModelWrapper, device: str) -> ModelWrapper:
    """Move an unpickled model to the requested device (artifacts are exported on CPU)."""
    wrapper.requested_device = validate_device(device)
    target = resolve_device(wrapper.requested_device)
    if wrapper.device != target:
        wrapper.model.to(target)
        wrapper.device = target
    return wrapper


def export(wrapper: ModelWrapper, output: str | Path, format: str = "dill",
           catalog: Catalog | None = None) -> store.Manifest:
    """Write a loaded wrapper as an artifact, its manifest naming the plugin that defines it."""
    entry = (catalog or get_catalog()).entry(wrapper.name)
    origin = store.PluginOrigin(entry.distribution, entry.version)
    return store.export_artifact(wrapper, Path(output), format, origin)
