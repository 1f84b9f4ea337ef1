"""The current version is one unit: a push that dies midway, racing pushes, and pushes in the same
microsecond all leave a current artifact whose bytes and manifest belong together."""

import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import SIGNING_KEY, artifact_file

from modeldeploy import store
from modeldeploy.store.signing import SIGNING_KEY_ENV

MOMENT = datetime(2024, 1, 31, 12, 0, 0, tzinfo=timezone.utc)

#: Runs ``push(argv[1], argv[2])`` and dies (os._exit) right after the store's argv[3]-th write:
#: a push killed between two of its steps, whatever the steps are.
DYING_PUSH = """
import os, sys
from modeldeploy import store
from modeldeploy.store.gcs import GCSStore
from modeldeploy.store.local import LocalStore

writes = 0

def dying(method):
    def write(*args, **kwargs):
        global writes
        result = method(*args, **kwargs)
        writes += 1
        if writes == int(sys.argv[3]):
            os._exit(9)
        return result
    return write

for cls in (LocalStore, GCSStore):
    for name in ("upload", "write_bytes", "copy", "replace_if_unchanged"):
        if name in vars(cls):
            setattr(cls, name, dying(vars(cls)[name]))
store.push(sys.argv[1], sys.argv[2])
"""


@pytest.fixture(params=["local", "gs"])
def destination(request, tmp_path):
    return request.getfixturevalue("gcs_store") if request.param == "gs" else str(tmp_path / "store")


def current(destination: str, cache: Path) -> store.VerifiedArtifact:
    """The current version as a server gets it: pulled, and verified against its manifest."""
    return store.pull_to_cache(f"{destination}/sentiment.dill", cache, store.TrustPolicy())


@pytest.mark.parametrize("writes_done", [1, 2, 3])
def test_a_push_killed_between_steps_leaves_a_whole_current_version(writes_done, destination, tmp_path,
                                                                    signing_key):
    old = artifact_file(tmp_path / "old", b"old version " * 1000)
    new = artifact_file(tmp_path / "new", b"new version " * 1000)
    store.push(old, destination)
    env = {**os.environ, SIGNING_KEY_ENV: SIGNING_KEY}
    died = subprocess.run([sys.executable, "-c", DYING_PUSH, str(new), destination, str(writes_done)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert died.returncode == 9, died.stderr
    pulled = current(destination, tmp_path / "cache")  # verifies: bytes and manifest belong together
    assert pulled.path.read_bytes() in (old.read_bytes(), new.read_bytes())
    if writes_done < 3:  # the new version is not complete yet: the previous one stays current
        assert pulled.path.read_bytes() == old.read_bytes()


def test_racing_pushes_and_readers_always_see_a_whole_pair(destination, tmp_path, signing_key):
    """Three pushes at once, and a reader pulling the current version meanwhile, round after round."""
    rounds = 12 if destination.startswith("gs://") else 30
    files = [artifact_file(tmp_path / f"v{i}", f"version {i} ".encode() * 2000) for i in range(3)]
    previous = store.push(files[0], destination).history_uri
    outcomes = []
    for round_number in range(rounds):
        start = threading.Barrier(len(files) + 1)
        pushed, failures = [], []
        pushing = [threading.Thread(target=_run, args=(start, failures, pushed.append, store.push, path, destination))
                   for path in files]
        for thread in pushing:
            thread.start()
        start.wait()
        while any(thread.is_alive() for thread in pushing):
            _run(None, failures, None, current, destination, tmp_path / "reader-cache")
        for thread in pushing:
            thread.join()
        assert not failures, f"round {round_number}: {failures[0]!r}"
        outcomes.append((pushed, current(destination, tmp_path / "cache").sha256))
    for pushed, latest in outcomes:  # one order of the pushes: each replaced the one before it, none lost
        winner = next(p.history_uri for p in pushed if p.manifest.sha256 == latest)
        assert sorted(p.replaced_uri for p in pushed) == sorted({previous} | {p.history_uri for p in pushed} - {winner})
        previous = winner


def _run(start, failures, done, function, *args):
    """Call ``function(*args)`` (after the barrier ``start``), collecting any exception in ``failures``."""
    try:
        if start is not None:
            start.wait()
        result = function(*args)
        if done is not None:
            done(result)
    except Exception as exc:  # noqa: BLE001 - reported by the test's assertion
        failures.append(exc)


def test_pushes_in_the_same_microsecond_all_succeed(destination, tmp_path, signing_key):
    files = [artifact_file(tmp_path / f"v{i}", f"version {i}".encode()) for i in range(4)]
    start = threading.Barrier(len(files))
    pushed, failures = [], []
    threads = [threading.Thread(target=_run, args=(start, failures, pushed.append, store.push, path, destination,
                                                   None, MOMENT)) for path in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len({p.history_uri for p in pushed}) == 4
    versions = store.history("sentiment", destination)
    assert {v.uri for v in versions} == {p.history_uri for p in pushed}
    assert {v.timestamp for v in versions} == {"20240131T120000.000000Z"}
    assert current(destination, tmp_path / "cache").sha256 in {p.manifest.sha256 for p in pushed}


def test_a_store_in_the_old_layout_stays_readable_until_the_next_push(tmp_path, signing_key):
    """Before pointers, a push copied the current version to ``<name>.dill`` + ``<name>.manifest.json``."""
    folder = tmp_path / "store"
    old = artifact_file(folder, b"pushed by an older modeldeploy")
    (folder / "sentiment.manifest.json").write_bytes(store.push(old, str(tmp_path / "elsewhere")).manifest.to_json())
    assert current(str(folder), tmp_path / "cache").path.read_bytes() == old.read_bytes()

    new = artifact_file(tmp_path / "new", b"pushed by this one")
    pushed = store.push(new, str(folder))
    assert pushed.replaced_uri is None
    assert current(str(folder), tmp_path / "cache").path.read_bytes() == new.read_bytes()
    assert [v.uri for v in store.history("sentiment", str(folder))] == [pushed.history_uri]
