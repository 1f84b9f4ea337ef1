"""The local cache heals: a damaged cached copy is downloaded again, and the partial file a killed
pull left behind is removed by the next pull into that folder (a live download's is not)."""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SIGNING_KEY, artifact_file

from modeldeploy import store
from modeldeploy.store.signing import SIGNING_KEY_ENV

#: Pulls argv[1] into the cache folder argv[2], as a server does at start-up.
PULL = """
import sys
from pathlib import Path
from modeldeploy import store
store.pull_to_cache(sys.argv[1], Path(sys.argv[2]), store.TrustPolicy())
"""
#: More than one chunk the download copies at a time (1 MiB), so part of it reaches the partial file.
HALFWAY = 1536 * 1024


@pytest.mark.parametrize("where", ["local", "gs"])
def test_a_damaged_cached_copy_is_downloaded_again(where, tmp_path, signing_key, caplog, request):
    destination = request.getfixturevalue("gcs_store") if where == "gs" else str(tmp_path / "store")
    original = artifact_file(tmp_path / "upload", b"the artifact's bytes " * 1000)
    store.push(original, destination)
    source, cache = f"{destination}/sentiment.dill", tmp_path / "cache"
    cached = store.pull_to_cache(source, cache, store.TrustPolicy()).path
    damaged = bytearray(cached.read_bytes())
    damaged[100] ^= 0x01
    cached.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING, logger="modeldeploy.store"):
        again = store.pull_to_cache(source, cache, store.TrustPolicy())
    assert again.path == cached and cached.read_bytes() == original.read_bytes()
    assert "is damaged" in caplog.text and "downloading it again" in caplog.text


class SlowSource:
    """A local store whose ``sentiment.dill`` is a FIFO: a pull of it gets the bytes the test writes,
    when it writes them, and waits for the rest meanwhile (a slow download, for real)."""

    def __init__(self, folder: Path, content: bytes) -> None:
        self.content = content
        signed = store.push(artifact_file(folder.parent / "upload", content), str(folder.parent / "signed")).manifest
        folder.mkdir(parents=True)
        (folder / "sentiment.manifest.json").write_bytes(signed.to_json())
        self.fifo = folder / "sentiment.dill"
        os.mkfifo(self.fifo)
        self.writer: int | None = None

    def start_pull(self, cache: Path) -> subprocess.Popen:
        """A pull in another process, left waiting halfway through the download."""
        env = {**os.environ, SIGNING_KEY_ENV: SIGNING_KEY}
        process = subprocess.Popen([sys.executable, "-c", PULL, str(self.fifo), str(cache)], env=env,
                                   stderr=subprocess.PIPE)
        self.writer = _eventually(lambda: os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))  # once it reads
        os.set_blocking(self.writer, True)
        os.write(self.writer, self.content[:HALFWAY])
        _eventually(lambda: next(p for p in cache.rglob(".partial-*") if p.stat().st_size > 0))
        return process

    def finish(self) -> None:
        os.write(self.writer, self.content[HALFWAY:])
        os.close(self.writer)


def _eventually(attempt, timeout: float = 60.0):
    """``attempt()``'s result once it stops raising (it polls: the other process gets there when it does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except (OSError, StopIteration):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_killed_pull_leaves_a_partial_that_the_next_pull_removes(tmp_path, signing_key):
    source = SlowSource(tmp_path / "store", b"x" * 2 * HALFWAY)
    cache = tmp_path / "cache"
    pulling = source.start_pull(cache)
    pulling.kill()  # SIGKILL: no finally, no cleanup
    pulling.wait()
    os.close(source.writer)
    assert len(list(cache.rglob(".partial-*"))) == 1

    source.fifo.unlink()
    (tmp_path / "store" / "sentiment.dill").write_bytes(source.content)
    store.pull_to_cache(str(tmp_path / "store" / "sentiment.dill"), cache, store.TrustPolicy())
    assert not list(cache.rglob(".partial-*"))


def test_a_live_download_in_another_process_is_left_alone(tmp_path, signing_key):
    source = SlowSource(tmp_path / "store", b"y" * 2 * HALFWAY)
    cache = tmp_path / "cache"
    pulling = source.start_pull(cache)
    try:
        other = artifact_file(tmp_path / "store", b"another model", name="ner")
        other.with_name("ner.manifest.json").write_bytes(
            store.push(other, str(tmp_path / "signed")).manifest.to_json())
        store.pull_to_cache(str(other), cache, store.TrustPolicy())  # sweeps the same cache folder
        source.finish()
        assert pulling.wait(timeout=60) == 0, pulling.stderr.read().decode()
    finally:
        pulling.kill()
    assert next(cache.rglob("sentiment.dill")).read_bytes() == source.content
    assert not list(cache.rglob(".partial-*"))
