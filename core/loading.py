"""The one path from a model name and a source to a ready wrapper.

``modeldeploy.load()``, the registry (every served model) and the CLI all load through
:func:`load`. A source is a hub id, a model folder, or a store artifact (``gs://`` or
``file://`` URI, or a local artifact file of any name). An artifact is identified by its
manifest: the model it holds is read there (and checked against the name asked for), never
guessed from the file name; nothing is unpickled before the store verified the bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import hub, runtimes, store
from .devices import resolve_device, validate_device
from .errors import ModelLoadError, StoreError, failure_reason
from .plugins import Catalog, get_catalog
from .wrapper import ModelWrapper

log = logging.getLogger(__name__)

HUB_OFF_FIX = ("serve real weights from a local folder (a save_pretrained copy), from a signed artifact "
               "(modeldeploy pull), or on a machine that reaches the hub")
#: Sources starting like this are local paths, never hub ids (``org/name`` is both, so it is not).
_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")

class BuildTurn:
    """Models are built in memory one at a time per process.

    transformers initialises models under process-global patches of ``torch.nn.Module`` and of
    ``torch`` itself (empty weights on the meta device, the default dtype), so two overlapping
    ``from_pretrained`` calls in threads hand each other meta tensors ("Cannot copy out of meta
    tensor"). Fetching artifacts, the slow and I/O-bound part of a load, happens outside the turn.
    A build abandoned past its ``load_timeout`` gives its turn up (:meth:`give_up`), so a hung
    build (a stuck mount, a plugin waiting on the network) cannot hold every other model back.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: int | None = None
        self._depth = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for the turn (re-entrant within one thread), build, pass it on."""
        me = threading.get_ident()
        with self._cond:
            while self._holder not in (None, me):
                self._cond.wait()
            self._holder, self._depth = me, self._depth + 1
        try:
            yield
        finally:
            with self._cond:
                if self._holder == me:
                    self._depth -= 1
                    if self._depth == 0:
                        self._holder = None
                        self._cond.notify_all()

    def give_up(self, thread_id: int | None) -> None:
        """The thread ``thread_id`` was abandoned: take the turn from it if it holds it."""
        with self._cond:
            if thread_id is not None and self._holder == thread_id:
                log.warning("an abandoned model build gave up its turn; the next model builds now")
                self._holder, self._depth = None, 0
                self._cond.notify_all()


BUILD_TURN = BuildTurn()


def _build(wrapper: ModelWrapper) -> ModelWrapper:
    with BUILD_TURN.hold():
        return wrapper.ensure_loaded()


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
    wrapper = entry.wrapper_class(source=source, device=device, settings=settings)
    if Path(source).expanduser().exists():
        return _build(wrapper)
    if source.startswith(_PATH_PREFIXES):
        raise ModelLoadError(f"could not load model {name!r} from {source!r}: the folder does not exist",
                             fix="point the model's source at a folder holding a save_pretrained copy")
    offline = hub.go_offline_if_unreachable()  # a hub id: fail in seconds, not after a minute of retries
    try:
        return _build(wrapper)
    except ModelLoadError as exc:
        if offline and not hub.is_cached(source):
            raise ModelLoadError(
                f"could not load model {name!r} from the hub id {source!r}: the HuggingFace hub is off (unreachable "
                "from here, or HF_HUB_OFFLINE is set) and the model is not in the local HuggingFace cache",
                fix=HUB_OFF_FIX,
            ) from exc
        raise


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
        with BUILD_TURN.hold():
            unpickled = store.unpickle_artifact(artifact)
        wrapper = _loaded_wrapper(unpickled, artifact, name)
        if settings:
            _refuse_conversion(wrapper, settings, artifact)
            wrapper.settings = wrapper.resolve_settings({**wrapper.settings, **settings})
        return _place(wrapper, device)
    files = store.extract_pretrained(artifact, cache)
    if name is not None and files.model != name:
        raise StoreError(f"artifact {artifact.path} holds model {files.model!r}, not {name!r}")
    wrapper_class = (catalog or get_catalog()).entry(files.model).wrapper_class
    merged = {**files.settings, **(settings or {})}
    return _build(wrapper_class(source=str(files.folder), device=device, settings=merged))


def _loaded_wrapper(unpickled: Any, artifact: store.VerifiedArtifact, name: str | None) -> ModelWrapper:
    """The unpickled object, if it is a loaded wrapper of the expected model."""
    label = str(artifact.path)
    if not isinstance(unpickled, ModelWrapper) or not unpickled.is_loaded:
        raise StoreError(f"artifact {label} does not hold a loaded ModelWrapper (got {type(unpickled).__name__})")
    expected = name or (artifact.manifest.name if artifact.manifest else None)
    if expected is not None and unpickled.name != expected:
        raise StoreError(f"artifact {label} holds model {unpickled.name!r}, not {expected!r}")
    return unpickled


def _refuse_conversion(wrapper: ModelWrapper, settings: Mapping[str, Any], artifact: store.VerifiedArtifact) -> None:
    """A dill artifact holds the model already converted: its precision and runtime cannot change."""
    for key, default in (("precision", "fp32"), ("runtime", "torch")):
        held = wrapper.settings.get(key, default)  # artifacts older than these settings are fp32 torch
        wanted = settings.get(key, held)
        if wanted != held:
            raise StoreError(f"artifact {artifact.path} holds model {wrapper.name!r} exported with {key} {held!r}, "
                             f"which a dill artifact fixes at export; to serve {key} {wanted!r}, export it again "
                             "with that setting, or push the pretrained format, which converts at load")


def _place(wrapper: ModelWrapper, device: str) -> ModelWrapper:
    """Move an unpickled model to the requested device (artifacts are exported on CPU)."""
    wrapper.requested_device = validate_device(device)
    target = resolve_device(wrapper.requested_device)
    runtimes.check_device(wrapper.name, wrapper.settings.get("precision", "fp32"),
                          wrapper.settings.get("runtime", "torch"), target)
    if wrapper.device != target:
        wrapper.model.to(target)
        wrapper.device = target
    return wrapper


def load_demo(name: str, device: str = "auto", settings: Mapping[str, Any] | None = None, *,
              cache_dir: str | Path | None = None, catalog: Catalog | None = None) -> ModelWrapper:
    """The demo model of ``name``'s task (built once into ``<cache>/demo-models/<name>``): a small
    model made offline, whose answers are not meaningful. For ``demo_fallback`` only."""
    entry = (catalog or get_catalog()).entry(name)
    builder = entry.wrapper_class.demo_builder
    if builder is None:
        raise ModelLoadError(f"model {name!r} (task {entry.wrapper_class.task!r}) has no demo model")
    folder = Path(cache_dir) if cache_dir else store.default_cache_dir()
    folder = folder / "demo-models" / name
    if not (folder / "config.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}-"))
        try:
            with BUILD_TURN.hold():
                builder(staging)
            if folder.exists() and not (folder / "config.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)  # left half-built by a crash
            try:
                os.replace(staging, folder)
            except OSError:  # another process published its build first: use that one
                if not (folder / "config.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _build(entry.wrapper_class(source=str(folder), device=device, settings=settings))


def load_or_demo(name: str, source: str | None, device: str = "auto", settings: Mapping[str, Any] | None = None,
                 *, sha256: str | None = None, trust_unsigned: bool = False, cache_dir: str | Path | None = None,
                 catalog: Catalog | None = None) -> tuple[ModelWrapper, str | None]:
    """:func:`load`, or when that fails, the demo model of the task and why it stands in (the
    ``demo_fallback`` policy). An artifact never falls back: a refused one must stay failed."""
    catalog = catalog or get_catalog()
    try:
        return load(name, source, device, settings, sha256=sha256, trust_unsigned=trust_unsigned,
                    cache_dir=cache_dir, catalog=catalog), None
    except Exception as exc:
        wrapper_class = catalog.entry(name).wrapper_class
        if wrapper_class.demo_builder is None or store.is_artifact_source(source or wrapper_class.default_source):
            raise
        reason = failure_reason(exc)
    log.warning("model %s serves DEMO weights (answers are not meaningful): %s", name, reason)
    return load_demo(name, device, settings, cache_dir=cache_dir, catalog=catalog), reason


def export(wrapper: ModelWrapper, output: str | Path, format: str = "dill",
           catalog: Catalog | None = None) -> store.Manifest:
    """Write a loaded wrapper as an artifact, its manifest naming the plugin that defines it."""
    entry = (catalog or get_catalog()).entry(wrapper.name)
    origin = store.PluginOrigin(entry.distribution, entry.version)
    return store.export_artifact(wrapper, Path(output), format, origin)
