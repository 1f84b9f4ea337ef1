"""The hook markers and the single hook plugins implement."""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT_NAME = "modeldeploy"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_models(register: Callable[[type], None]) -> None:
    """Call ``register(WrapperClass)`` once for each ModelWrapper subclass the plugin provides."""
