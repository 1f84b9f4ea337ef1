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


def test_a_link_from_another_front_reaches_the_worker_started_again_without_a_failed_call(tmp_path) -> None:
    """A further front (server.fronts) does not see a worker exit; its idle connections to the old
    worker must not fail the first calls that borrow them once the new worker listens."""
    from pathlib import Path

    from modeldeploy.process_engine.client import WorkerAddress, WorkerLink

    socket_path, key = tmp_path / "worker.sock", os.urandom(32)
    config = parse_config({})

    def start_worker():
        socket_path.unlink(missing_ok=True)
        process = multiprocessing.get_context("spawn").Process(
            target=run_worker, args=(config, "no-such-model", str(socket_path), key, LogSettings()))
        process.start()
        wait_for(lambda: Path(socket_path).exists(), timeout=60, what="the worker's socket")
        return process

    link = WorkerLink(config, WorkerAddress("no-such-model", socket_path, key))
    worker = start_worker()
    try:
        barrier = threading.Barrier(3)

        def report_at_once() -> None:  # three calls at a time: three connections left idle in the pool
            barrier.wait()
            link.report()

        callers = [threading.Thread(target=report_at_once) for _ in range(3)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        worker.kill()
        worker.join()
        worker = start_worker()
        # each call answered by the new worker (loading, then failed: no such model), none failing
        # on a connection to the old one
        assert {link.report().status.state for _ in range(4)} <= {"loading", FAILED}
    finally:
        worker.kill()
        worker.join()
