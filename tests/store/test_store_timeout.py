"""A bucket that accepts connections and never answers fails an operation within the stated
timeout (MODELDEPLOY_GCS_RETRY_DEADLINE), and the error says which timeout that was."""

import socket
import threading
import time

import pytest
from conftest import artifact_file

from modeldeploy import store
from modeldeploy.errors import StoreUnavailableError
from modeldeploy.store.gcs import RETRY_DEADLINE_ENV

DEADLINE = 2.0


@pytest.fixture
def silent_server():
    """``http://127.0.0.1:<port>``: accepts every connection, reads nothing, answers nothing."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            try:
                held.append(listener.accept()[0])  # kept open: the client waits for an answer
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for connection in held:
        connection.close()


@pytest.mark.parametrize("operation", ["pull", "push"])
def test_a_silent_bucket_fails_within_the_stated_timeout(operation, silent_server, tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", silent_server)
    monkeypatch.setenv(RETRY_DEADLINE_ENV, str(DEADLINE))
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as refused:
        if operation == "pull":
            store.pull_to_cache("gs://silent/models/sentiment.dill", tmp_path / "cache", store.TrustPolicy())
        else:
            store.push(artifact_file(tmp_path / "upload", b"bytes"), "gs://silent/models")
    assert time.monotonic() - started < DEADLINE + 1.5  # the deadline, and scheduling slack: no second wait
    assert f"gives up after at most {DEADLINE:g} s ({RETRY_DEADLINE_ENV})" in str(refused.value)
