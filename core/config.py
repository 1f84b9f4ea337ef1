"""config.yaml: which models to serve and how, validated with one clear message per mistake.

Every installed plugin's models are served unless ``serve:`` lists the ones to serve; ``models:``
holds per-model overrides (a source, a device, batching) of the plugins' defaults, so a plugin
``pip install``-ed later is served with no change to the file.

Strings may use ``${VAR}`` and ``${VAR:-default}``; a value that is *only* an interpolation is
re-read as YAML, so ``port: ${PORT:-8080}`` is an integer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .devices import validate_device
from .errors import ConfigError

MIN_HTTP_THREADS, HTTP_SPARE_THREADS, MAX_HTTP_THREADS = 16, 8, 1024
ENGINES = ("auto", "local", "process", "ray")
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class BatchConfig:
    """Adaptive batching knobs of one model."""

    max_batch_size: int = 32
    max_wait_ms: float = 0.0
    max_queue: int = 64
    timeout: float = 60.0
    #: Right after a round, wait up to this fraction of its duration for the clients it answered
    #: to send again (0: never); see :class:`modeldeploy.batching.Batcher`.
    regroup_wait: float = 0.1
    #: Forward passes run at once on a CPU, each on its share of torch's threads, when a round's
    #: sub-batches end sooner that way (0: 2 where the model allows it, else 1; see
    #: :mod:`modeldeploy.pass_streams`).
    streams: int = 0


@dataclass(frozen=True)
class AutoscalingConfig:
    """Replicas between ``min_replicas`` and ``max_replicas``, aiming at ``target_ongoing_requests``
    requests in each (ray engine); 0 for the target means the model's ``batch.max_batch_size``."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    """How one model is served."""

    source: str | None = None
    device: str = "auto"
    lazy: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    batch: BatchConfig = field(default_factory=BatchConfig)
    sha256: str | None = None
    trust_unsigned: bool = False
    #: Seconds one load attempt may take before it is abandoned (and retried like a failure).
    load_timeout: float = 600.0
    #: Ray engine only (the local engine serves each model once, in its own process): a fixed
    #: number of replicas or an autoscaling range, and what each replica reserves on its node.
    replicas: int = 1
    autoscaling: AutoscalingConfig | None = None
    num_cpus: float = 0.0
    num_gpus: float = 0.0
    #: Requests waiting for a free replica before the next one is refused with 503; 0: ``batch.max_queue``.
    max_queued_requests: int = 0


@dataclass(frozen=True)
class ServerConfig:
    """HTTP server settings."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: HTTP worker threads; 0 sizes the pool from the served models (see ``Config.http_threads``).
    threads: int = 0
    max_body_bytes: int = 1024 * 1024
    max_items: int = 256
    #: torch intra-op threads for the inference threads; 0 means one per CPU the process may use.
    torch_threads: int = 0
    #: Free heap memory allowed to pile up before it is given back to the OS (see modeldeploy.heap).
    heap_trim_slack_mb: int = 256
    #: A model that failed to load is tried again after this many seconds, doubling up to the max.
    load_retry_seconds: float = 5.0
    load_retry_max_seconds: float = 300.0
    #: A kept-alive connection with no request in progress is closed after this many seconds.
    idle_timeout_seconds: float = 75.0
    #: A request whose next bytes do not arrive for this long, or that is not whole after
    #: ``request_timeout_seconds``, is answered 408 and its connection closed.
    read_timeout_seconds: float = 5.0
    request_timeout_seconds: float = 60.0
    #: Open connections at most; 0: as many as the process may open files, less a reserve.
    connection_limit: int = 0
    #: On SIGTERM, how long requests in flight may take to finish before the server exits.
    shutdown_grace_seconds: float = 30.0
    #: Refusals (503) sent at once per second; beyond, each is held back (no thread held) so that
    #: clients retrying at once cannot spend the CPU the models need; 0: never held.
    max_refusals_per_second: float = 200.0
    #: Bearer token of the model-repository routes (load, unload, index); empty: those routes are off.
    admin_token: str = field(default="", repr=False)
    #: ``local`` (the models' threads in this process), ``process`` (each model in a worker process of
    #: its own, the HTTP front here), ``ray`` (each model a Ray Serve deployment; ``modeldeploy[ray]``)
    #: or ``auto``: ``process`` when a served model runs on CUDA, else ``local``.
    engine: str = "auto"
    #: Ray engine: the cluster to join (``HOST:PORT``); empty starts a private one on 127.0.0.1.
    ray_address: str = ""
    #: CPUs a private Ray cluster may schedule on; 0: those this process may use.
    ray_num_cpus: int = 0
    #: Process engine: HTTP front processes sharing the listening socket and the model workers
    #: (one GIL each: the front's CPU per answer is what limits a fast GPU; see docs/architecture.md).
    fronts: int = 1


@dataclass(frozen=True)
class Config:
    """The whole file. ``models`` holds overrides (None when omitted); ``serve`` the models to
    serve (None: every installed one)."""

    models: Mapping[str, ModelConfig] | None = None
    serve: tuple[str, ...] | None = None
    server: ServerConfig = field(default_factory=ServerConfig)
    cache_dir: str | None = None
    #: A model whose hub id or folder cannot be loaded serves a locally built demo model of its
    #: task instead, labelled as such everywhere (never for artifacts: a refused one stays failed).
    demo_fallback: bool = False

    def model(self, name: str) -> ModelConfig:
        return (self.models or {}).get(name, ModelConfig())

    def with_model(self, name: str, **changes: Any) -> Config:
        """This config with model ``name``'s settings changed (an operator's new source, say)."""
        return replace(self, models={**(self.models or {}), name: replace(self.model(name), **changes)})

    def http_threads(self, served: Iterable[str]) -> int:
        """HTTP threads to run: ``server.threads``, or with 0 enough for backpressure to work.

        Each waiting request holds a thread, and requests beyond the pool wait inside the WSGI
        server where no queue limit sees them (health checks too, behind them). A round takes
        everything queued when it starts and computes it in sub-batches, so the automatic pool
        covers, for every served model, a full queue waiting behind a round that took a full queue
        (``2 * max_queue``, or ``max_queue + max_batch_size`` when a batch is larger), with a few
        threads left for the homepage, health checks and metrics.
        """
        if self.server.threads:
            return self.server.threads
        in_flight = sum(self.model(n).batch.max_queue + max(self.model(n).batch.max_queue,
                                                            self.model(n).batch.max_batch_size) for n in served)
        return min(max(in_flight + HTTP_SPARE_THREADS, MIN_HTTP_THREADS), MAX_HTTP_THREADS)

    def served_names(self, available: Iterable[str]) -> list[str]:
        """The models to serve: ``serve`` when the file restricts the set, else every installed one."""
        return sorted(self.serve) if self.serve is not None else sorted(available)


# --------------------------------------------------------------------------- interpolation
def interpolate(value: Any, path: str = "", environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${VAR}``/``${VAR:-default}`` in every string of a parsed document."""
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {k: interpolate(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set; set it or write ${{{name}:-default}}")

    result = _INTERPOLATION.sub(replace, value)
    if "${" in result and _INTERPOLATION.search(value) is None:
        raise ConfigError(f"{path}: malformed interpolation in {value!r}; use ${{VAR}} or ${{VAR:-default}}")
    if _INTERPOLATION.fullmatch(value):
        parsed = yaml.safe_load(result) if result.strip() else result
        return parsed if isinstance(parsed, (bool, int, float)) else result
    return result


# --------------------------------------------------------------------------- validation
def _type_name(expected: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}
    return names.get(expected, str(expected))


def _check(value: Any, expected: type, path: str) -> Any:
    ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise ConfigError(f"{path} must be {_type_name(expected)}, got {type(value).__name__} ({value!r})")
    return value


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path} must be a mapping of keys to values, got {type(value).__name__}")
    return value


def _no_unknown(data: Mapping[str, Any], cls: type, path: str) -> None:
    allowed = [f.name for f in fields(cls)]
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{path}.{key} is not a known key; allowed keys under {path}: {', '.join(allowed)}")


def _positive(value: float, path: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{path} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _positive_number(value: Any, path: str) -> float:
    number = _check(value, float, path)
    _positive(number, path)
    return number


def _parse_batch(data: Any, path: str) -> BatchConfig:
    data = _mapping(data, path)
    _no_unknown(data, BatchConfig, path)
    batch = BatchConfig(
        max_batch_size=_check(data.get("max_batch_size", BatchConfig.max_batch_size), int, f"{path}.max_batch_size"),
        max_wait_ms=_check(data.get("max_wait_ms", BatchConfig.max_wait_ms), float, f"{path}.max_wait_ms"),
        max_queue=_check(data.get("max_queue", BatchConfig.max_queue), int, f"{path}.max_queue"),
        timeout=_check(data.get("timeout", BatchConfig.timeout), float, f"{path}.timeout"),
        regroup_wait=_check(data.get("regroup_wait", BatchConfig.regroup_wait), float, f"{path}.regroup_wait"),
        streams=_check(data.get("streams", BatchConfig.streams), int, f"{path}.streams"),
    )
    _positive(batch.max_batch_size, f"{path}.max_batch_size")
    _positive(batch.max_wait_ms, f"{path}.max_wait_ms", allow_zero=True)
    _positive(batch.max_queue, f"{path}.max_queue")
    _positive(batch.timeout, f"{path}.timeout")
    _positive(batch.streams, f"{path}.streams", allow_zero=True)
    if not 0 <= batch.regroup_wait <= 1:
        raise ConfigError(f"{path}.regroup_wait must be between 0 and 1 (a fraction of a round's duration), "
                          f"got {batch.regroup_wait!r}")
    return batch


def _parse_model(data: Any, path: str) -> ModelConfig:
    data = _mapping(data, path)
    _no_unknown(data, ModelConfig, path)
    source = data.get("source")
    if source is not None:
        source = _check(source, str, f"{path}.source")
        if not source.strip():
            raise ConfigError(f"{path}.source must not be empty; remove the key to use the plugin's default")
    device = _check(data.get("device", "auto"), str, f"{path}.device")
    try:
        validate_device(device)
    except ConfigError as exc:
        raise ConfigError(f"{path}.device: {exc}") from None
    sha256 = data.get("sha256")
    if sha256 is not None:
        sha256 = _check(sha256, str, f"{path}.sha256").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ConfigError(f"{path}.sha256 must be 64 hexadecimal characters")
    return ModelConfig(
        source=source,
        device=device,
        lazy=_check(data.get("lazy", False), bool, f"{path}.lazy"),
        settings=_mapping(data.get("settings"), f"{path}.settings"),
        batch=_parse_batch(data.get("batch"), f"{path}.batch"),
        sha256=sha256,
        trust_unsigned=_check(data.get("trust_unsigned", False), bool, f"{path}.trust_unsigned"),
        load_timeout=_positive_number(data.get("load_timeout", ModelConfig.load_timeout), f"{path}.load_timeout"),
        **_parse_replicas(data, path),
    )


def _parse_replicas(data: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The ray engine's per-model keys: ``replicas`` or ``autoscaling``, and each replica's share."""
    if "replicas" in data and "autoscaling" in data:
        raise ConfigError(f"{path} sets both replicas and autoscaling; keep one (a fixed count, or a range)")
    parsed: dict[str, Any] = {
        "replicas": _check(data.get("replicas", ModelConfig.replicas), int, f"{path}.replicas"),
        "num_cpus": _check(data.get("num_cpus", ModelConfig.num_cpus), float, f"{path}.num_cpus"),
        "num_gpus": _check(data.get("num_gpus", ModelConfig.num_gpus), float, f"{path}.num_gpus"),
        "max_queued_requests": _check(data.get("max_queued_requests", ModelConfig.max_queued_requests), int,
                                      f"{path}.max_queued_requests"),
    }
    _positive(parsed["replicas"], f"{path}.replicas")
    for key in ("num_cpus", "num_gpus", "max_queued_requests"):
        _positive(parsed[key], f"{path}.{key}", allow_zero=True)
    if "autoscaling" in data:
        parsed["autoscaling"] = _parse_autoscaling(data["autoscaling"], f"{path}.autoscaling")
    return parsed


def _parse_autoscaling(data: Any, path: str) -> AutoscalingConfig:
    data = _mapping(data, path)
    _no_unknown(data, AutoscalingConfig, path)
    for key in ("min_replicas", "max_replicas"):
        if key not in data:
            raise ConfigError(f"{path}.{key} is required (autoscaling keeps the replicas between the two)")
    scaling = AutoscalingConfig(
        min_replicas=_check(data["min_replicas"], int, f"{path}.min_replicas"),
        max_replicas=_check(data["max_replicas"], int, f"{path}.max_replicas"),
        target_ongoing_requests=_check(data.get("target_ongoing_requests", 0.0), float,
                                       f"{path}.target_ongoing_requests"),
    )
    _positive(scaling.min_replicas, f"{path}.min_replicas", allow_zero=True)
    _positive(scaling.max_replicas, f"{path}.max_replicas")
    _positive(scaling.target_ongoing_requests, f"{path}.target_ongoing_requests", allow_zero=True)
    if scaling.max_replicas < scaling.min_replicas:
        raise ConfigError(f"{path}.max_replicas ({scaling.max_replicas}) must be at least min_replicas "
                          f"({scaling.min_replicas})")
    return scaling


def _parse_server(data: Any) -> ServerConfig:
    data = _mapping(data, "server")
    _no_unknown(data, ServerConfig, "server")
    server = ServerConfig(**{
        f.name: _check(data.get(f.name, f.default), type(f.default), f"server.{f.name}")
        for f in fields(ServerConfig)
    })
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"server.port must be between 0 and 65535, got {server.port}")
    for key in ("max_body_bytes", "max_items"):
        _positive(getattr(server, key), f"server.{key}")
    _positive(server.threads, "server.threads", allow_zero=True)
    _positive(server.torch_threads, "server.torch_threads", allow_zero=True)
    _positive(server.connection_limit, "server.connection_limit", allow_zero=True)
    _positive(server.heap_trim_slack_mb, "server.heap_trim_slack_mb", allow_zero=True)
    _positive(server.max_refusals_per_second, "server.max_refusals_per_second", allow_zero=True)
    for key in ("load_retry_seconds", "load_retry_max_seconds", "idle_timeout_seconds", "read_timeout_seconds",
                "request_timeout_seconds", "shutdown_grace_seconds"):
        _positive(getattr(server, key), f"server.{key}")
    _check_admin_token(server.admin_token)
    if server.engine not in ENGINES:
        raise ConfigError(f"server.engine must be one of {', '.join(ENGINES)}, got {server.engine!r}")
    _positive(server.ray_num_cpus, "server.ray_num_cpus", allow_zero=True)
    _positive(server.fronts, "server.fronts")
    if server.load_retry_max_seconds < server.load_retry_seconds:
        raise ConfigError(f"server.load_retry_max_seconds ({server.load_retry_max_seconds:g}) must be at least "
                          f"server.load_retry_seconds ({server.load_retry_seconds:g})")
    return server


#: A shorter admin token is too easy to guess for a route that changes what the server runs.
MIN_ADMIN_TOKEN_LENGTH = 16


def _check_admin_token(token: str) -> None:
    if not token:
        return
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ConfigError(f"server.admin_token must be at least {MIN_ADMIN_TOKEN_LENGTH} characters long "
                          f"(it has {len(token)}); generate one with: python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))'")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise ConfigError("server.admin_token must be printable ASCII without spaces (it travels in an "
                          "'Authorization: Bearer' header)")


def parse_config(document: Any, available: Iterable[str] | Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed document.

    ``available`` (model names) catches unknown plugins; when it maps names to wrapper classes,
    each model's ``settings`` are checked against what that wrapper accepts.
    """
    document = interpolate(_mapping(document, "config"), environ=environ)
    _no_unknown(document, Config, "config")
    names = set(available) if available is not None else None
    models = None
    if "models" in document:
        raw_models = _mapping(document["models"], "models")
        models = {}
        for name, data in raw_models.items():
            _check_installed(name, names, f"models.{name}")
            models[name] = _parse_model(data, f"models.{name}")
            wrapper_class = available.get(name) if isinstance(available, Mapping) else None
            if wrapper_class is not None:
                try:
                    wrapper_class.resolve_settings(models[name].settings)
                except ConfigError as exc:
                    raise ConfigError(f"models.{name}.settings: {exc}") from None
    serve = _parse_serve(document.get("serve"), names) if "serve" in document else None
    cache_dir = document.get("cache_dir")
    if cache_dir is not None:
        cache_dir = _check(cache_dir, str, "cache_dir")
    demo_fallback = _check(document.get("demo_fallback", False), bool, "demo_fallback")
    return Config(models=models, serve=serve, server=_parse_server(document.get("server")), cache_dir=cache_dir,
                  demo_fallback=demo_fallback)


def _check_installed(name: str, names: set[str] | None, path: str) -> None:
    if names is not None and name not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise ConfigError(
            f"{path}: no installed plugin provides a model named {name!r}; "
            f"installed models: {listed} (pip install the plugin or fix the name)"
        )


def _parse_serve(value: Any, names: set[str] | None) -> tuple[str, ...]:
    """``serve: [a, b]``: exactly these installed models (``[]`` serves none)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"serve must be a list of model names (omit it to serve every installed model), "
                          f"got {value!r}")
    for index, name in enumerate(value):
        _check_installed(name, names, f"serve[{index}]")
        if name in value[:index]:
            raise ConfigError(f"serve[{index}]: {name!r} is listed twice")
    return tuple(value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping (plain YAML keeps the last one,
    silently dropping the first setting)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(f"key {key!r} appears twice in one mapping (lines {seen[key]} and {line}); "
                                  "keep one of them")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike[str] | None,
                available: Iterable[str] | Mapping[str, Any] | None = None) -> Config:
    """Read and validate a YAML file (``None``: defaults, every installed model)."""
    if path is None:
        return parse_config({}, available)
    file = Path(path)
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(file)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                          f"offset {exc.start}); is it the YAML file you meant?") from None
    except FileNotFoundError:
        raise ConfigError(f"config file {str(file)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(file)!r} cannot be read: {exc.strerror}") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(file)!r} is not valid YAML: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"config file {str(file)!r}: {exc}") from None
    return parse_config(document if document is not None else {}, available)
