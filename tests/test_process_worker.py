"""The process engine's worker, in this process: what it answers when its model service cannot be
built, and when answering a message fails (the live server tests cover the rest)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing import Pipe
from multiprocessing.connection import Client

import pytest
from waiting import wait_for

from modeldeploy.config import parse_config
from modeldeploy.errors import ModelNotReadyError, PredictionError
from modeldeploy.logs import LogSettings
from modeldeploy.process_engine.worker import EARLY_CANCELS, _Worker, run_worker
from modeldeploy.registry import FAILED
from modeldeploy.remote import RemoteFailure


def test_a_model_service_that_cannot_start_is_reported_failed_with_the_reason() -> None:
    worker = _Worker(parse_config({}), "no-such-model")
    worker.load()
    report = worker._reply(("report",))
    assert report.status.state == FAILED and "could not start" in report.status.reason
    assert "no-such-model" in report.status.reason
    refused = worker._reply(("predict", ["text"], None))
    assert isinstance(refused, RemoteFailure) and refused.kind is ModelNotReadyError
    assert refused.message == report.status.reason


def test_a_message_that_fails_is_answered_as_an_error_and_the_connection_stays_open() -> None:
    worker = _Worker(parse_config({}), "no-such-model")
    front, back = Pipe()
    answering = threading.Thread(target=worker.answer, args=(back,), daemon=True)
    answering.start()
    front.send(("no-such-message",))
    reply = front.recv()
    assert isinstance(reply, RemoteFailure) and reply.kind is PredictionError
    assert "no-such-message" in reply.message
    front.send(("report",))  # the same connection answers the next message
    assert front.recv().status.state == "loading"
    front.close()
    answering.join(5)
    assert not answering.is_alive()


class CancellationProbe:
    """A stand-in model service that answers whether the request's cancellation was cancelled."""

    def predict(self, texts, timeout, cancellation):
        return cancellation.cancelled


def test_a_cancel_that_overtakes_its_request_still_cancels_it_and_is_remembered_boundedly() -> None:
    worker = _Worker(parse_config({}), "probe")
    worker._cancel(7)  # arrives first, on another connection
    assert worker._predict(CancellationProbe(), ["x"], None, 7) is True
    assert worker._predict(CancellationProbe(), ["x"], None, 7) is False  # used once
    assert worker._predict(CancellationProbe(), ["x"], None, 8) is False
    for request_id in range(100, 100 + EARLY_CANCELS + 1):
        worker._cancel(request_id)
    assert worker._predict(CancellationProbe(), ["x"], None, 100) is False  # the oldest was forgotten
    assert worker._predict(CancellationProbe(), ["x"], None, 100 + EARLY_CANCELS) is True


def test_a_connection_without_the_key_is_refused_and_the_worker_keeps_answering(tmp_path) -> None:
    socket_path, key = str(tmp_path / "worker.sock"), os.urandom(32)
    worker = multiprocessing.get_context("spawn").Process(
        target=run_worker, args=(parse_config({}), "no-such-model", socket_path, key, LogSettings()))
    worker.start()
    try:
        wait_for(lambda: os.path.exists(socket_path))
        with pytest.raises(multiprocessing.AuthenticationError):
            Client(socket_path, family="AF_UNIX", authkey=os.urandom(32))
        with Client(socket_path, family="AF_UNIX", authkey=key) as front:
            front.send(("report",))
            assert front.recv().status.state in {FAILED, "loading"}
    finally:
        worker.kill()
        worker.join()
