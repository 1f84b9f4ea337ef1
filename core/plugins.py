"""Plugin discovery: one pluggy PluginManager fed by the ``modeldeploy`` entry-point group.

Environment switches (read at discovery time, like pytest's and datasette's):

- ``MODELDEPLOY_PLUGINS=a,b`` loads only the named plugins (entry-point or distribution names);
  set but empty, it loads none.
- ``MODELDEPLOY_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points altogether; plugins registered in
  process with :func:`register_plugin` still count.

A plugin that fails to import or to register is recorded with its error and never stops the
others: ``modeldeploy list`` shows it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import pluggy

from . import hookspecs
from .errors import PluginError, UnknownModelError
from .names import MODEL_NAME_PATTERN
from .wrapper import ModelWrapper

ENTRY_POINT_GROUP = "modeldeploy"
ALLOW_LIST_ENV = "MODELDEPLOY_PLUGINS"
DISABLE_AUTOLOAD_ENV = "MODELDEPLOY_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class ModelEntry:
    """A registered wrapper class and where it came from."""

    wrapper_class: type[ModelWrapper]
    plugin: str
    distribution: str | None = None
    version: str | None = None

    @property
    def name(self) -> str:
        return self.wrapper_class.name


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported or whose registration failed."""

    plugin: str
    error: str
    distribution: str | None = None


@dataclass
class Catalog:
    """What discovery found: models by name, the plugins that failed, and the installed plugins
    the ``MODELDEPLOY_PLUGINS`` allow-list left out (entry-point name -> distribution)."""

    models: dict[str, ModelEntry] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    filtered_out: dict[str, str | None] = field(default_factory=dict)
    #: ``MODELDEPLOY_PLUGINS`` names that match no installed plugin's entry point or distribution.
    unmatched_allowed: list[str] = field(default_factory=list)
    #: Every plugin that loaded, models or not: plugin name -> (distribution, version); None for
    #: a plugin registered in process.
    plugins: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def wrapper_classes(self) -> dict[str, type[ModelWrapper]]:
        """Model name -> wrapper class, what config validation checks each model's settings against."""
        return {name: entry.wrapper_class for name, entry in self.models.items()}

    def entry(self, name: str) -> ModelEntry:
        """The entry registered as ``name``, or an error listing the names that exist."""
        if not isinstance(name, str) or name not in self.models:
            raise UnknownModelError(str(name), self.models)
        return self.models[name]


_lock = threading.RLock()
_catalog: Catalog | None = None
_local_plugins: dict[str, object] = {}


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


pm = _new_manager()


def _allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_LIST_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _autoload_disabled() -> bool:
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _dist_of(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _load_entry_points(catalog: Catalog) -> dict[str, tuple[str | None, str | None]]:
    """Import every allowed entry point into ``pm``; return plugin name -> (dist, version)."""
    origins: dict[str, tuple[str | None, str | None]] = {}
    if _autoload_disabled():
        return origins
    allowed = _allow_list()
    installed = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    if allowed is not None:
        known = {ep.name for ep in installed} | {_dist_of(ep)[0] for ep in installed}
        catalog.unmatched_allowed = sorted(allowed - known)
    for ep in installed:
        dist_name, version = _dist_of(ep)
        if allowed is not None and ep.name not in allowed and dist_name not in allowed:
            catalog.filtered_out[ep.name] = dist_name
            continue
        if pm.get_plugin(ep.name) is not None:
            origins[ep.name] = (dist_name, version)
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except PLUGIN_FAULTS as exc:  # a broken plugin must not take the others down
            catalog.failures.append(PluginFailure(ep.name, f"failed to import: {_describe(exc)}", dist_name))
            continue
        origins[ep.name] = (dist_name, version)
    return origins


#: What a plugin's import or registration may raise without taking discovery down: any error, and
#: ``sys.exit()``, which would otherwise end ``modeldeploy list``, ``serve`` and ``import modeldeploy``.
#: KeyboardInterrupt still stops everything, as the user asked.
PLUGIN_FAULTS = (Exception, SystemExit)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _validate(wrapper_class: object) -> type[ModelWrapper]:
    if not (isinstance(wrapper_class, type) and issubclass(wrapper_class, ModelWrapper)):
        raise PluginError(f"register() expects a ModelWrapper subclass, got {wrapper_class!r}")
    name = getattr(wrapper_class, "name", None)
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise PluginError(
            f"{wrapper_class.__qualname__}.name must be a lowercase identifier "
            f"(letters, digits, '_', '-', '.'), got {name!r}"
        )
    return wrapper_class


def _collect_models(catalog: Catalog, origins: dict[str, tuple[str | None, str | None]]) -> None:
    """Ask each plugin, in registration order, for its models; the first owner of a name keeps it."""
    for impl in pm.hook.register_models.get_hookimpls():
        plugin_name = impl.plugin_name
        dist_name, version = origins.get(plugin_name, (None, None))
        found: list[ModelEntry] = []

        def register(wrapper_class: type, _found=found, _plugin=plugin_name) -> None:
            cls = _validate(wrapper_class)
            _found.append(ModelEntry(cls, _plugin, dist_name, version))

        try:
            impl.function(register=register)
        except PLUGIN_FAULTS as exc:
            catalog.failures.append(PluginFailure(plugin_name, f"failed to register: {_describe(exc)}", dist_name))
            continue
        for entry in found:
            existing = catalog.models.get(entry.name)
            if existing is not None:
                catalog.failures.append(
                    PluginFailure(
                        plugin_name,
                        f"model name {entry.name!r} is already registered by plugin {existing.plugin!r}",
                        dist_name,
                    )
                )
                continue
            catalog.models[entry.name] = entry


def get_catalog(refresh: bool = False) -> Catalog:
    """Discover plugins once per process (or again with ``refresh=True``)."""
    global _catalog, pm
    with _lock:
        if _catalog is not None and not refresh:
            return _catalog
        pm = _new_manager()
        catalog = Catalog()
        origins = _load_entry_points(catalog)
        for name, plugin in _local_plugins.items():
            pm.register(plugin, name=name)
        catalog.plugins = {name: origins.get(name, (None, None))
                           for name in [*origins, *_local_plugins] if pm.get_plugin(name) is not None}
        _collect_models(catalog, origins)
        _catalog = catalog
        return catalog


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register an in-process plugin (a module or object with a ``register_models`` hookimpl).

    Handy in notebooks and tests; the catalog is rebuilt so the new models appear at once.
    """
    key = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    with _lock:
        _local_plugins[key] = plugin
        get_catalog(refresh=True)


def allow_list_report(catalog: Catalog) -> list[str]:
    """Lines saying what ``MODELDEPLOY_PLUGINS`` left out and which of its names match nothing."""
    lines = []
    if catalog.unmatched_allowed:
        names = ", ".join(map(repr, catalog.unmatched_allowed))
        lines.append(f"{ALLOW_LIST_ENV} names {names}, which match(es) no installed plugin")
    if catalog.filtered_out:
        left_out = ", ".join(f"{name} ({dist})" if dist and dist != name else name
                             for name, dist in sorted(catalog.filtered_out.items()))
        lines.append(f"installed but left out by {ALLOW_LIST_ENV}={os.environ[ALLOW_LIST_ENV]!r}: {left_out}")
    return lines


def list_models() -> list[str]:
    """Names of every model the installed (and allowed) plugins register, sorted."""
    return sorted(get_catalog().models)
