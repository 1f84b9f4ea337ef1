"""The notebook-facing API: ``list_models()`` and ``load(name)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import UnknownModelError
from .plugins import ModelEntry, get_catalog
from .wrapper import ModelWrapper


def list_models() -> list[str]:
    """Names of every model the installed (and allowed) plugins register, sorted."""
    return sorted(get_catalog().models)


def model_entry(name: str) -> ModelEntry:
    """The catalog entry for ``name``, or an error listing the names that exist."""
    catalog = get_catalog()
    if not isinstance(name, str) or name not in catalog.models:
        raise UnknownModelError(str(name), catalog.models)
    return catalog.models[name]


def load(
    name: str,
    source: str | None = None,
    device: str = "auto",
    settings: Mapping[str, Any] | None = None,
) -> ModelWrapper:
    """Instantiate and load the model ``name`` (from ``source`` or the plugin's default).

    A ``source`` naming a store artifact (``gs://...``, ``file://...``, ``*.dill``,
    ``*.pretrained.tar``) is pulled and verified first; see ``modeldeploy.store.load_artifact``
    for pinning a sha256 or trusting an unsigned artifact.
    """
    from . import store  # imported on use: keeps `import modeldeploy` light

    if store.is_artifact_source(source):
        model_entry(name)
        return store.load_artifact(source, name=name, device=device, settings=settings)
    wrapper = model_entry(name).wrapper_class(source=source, device=device, settings=settings)
    return wrapper.ensure_loaded()
