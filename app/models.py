"""What the app shows about a served model (``/models`` and the homepage cards)."""

from __future__ import annotations

from typing import Any

from modeldeploy.registry import Registry


def describe_model(registry: Registry, name: str) -> dict[str, Any]:
    """Name, task, plugin, source, device, precision, runtime, status and example of one served model."""
    served = registry.model(name)
    entry, loaded = served.entry, served.wrapper
    wrapper_class = entry.wrapper_class
    # a model served elsewhere reports no settings: its configured ones are what it runs with
    settings = getattr(loaded, "settings", None) or wrapper_class.resolve_settings(served.config.settings)
    return {
        "name": name,
        "task": wrapper_class.task,
        "description": wrapper_class.description,
        "plugin": {"distribution": entry.distribution or entry.plugin, "version": entry.version},
        "source": served.source,
        "device": loaded.device if loaded is not None else served.config.device,
        # artifacts exported before these settings existed hold fp32 torch models
        "precision": settings.get("precision", "fp32"),
        "runtime": settings.get("runtime", "torch"),
        "status": served.status.as_dict(),
        "example": wrapper_class.example,
    }


def describe_models(registry: Registry) -> list[dict[str, Any]]:
    return [describe_model(registry, name) for name in registry.names]

