"""The cancellation signal shared by the HTTP front (which cancels) and the batcher (which listens)."""

from __future__ import annotations

import threading

from modeldeploy.cancellation import Cancellation


def test_callbacks_run_once_on_the_cancelling_thread() -> None:
    cancellation, calls = Cancellation(), []
    cancellation.on_cancel(lambda: calls.append(threading.current_thread().name))
    worker = threading.Thread(target=lambda: (cancellation.cancel(), cancellation.cancel()), name="canceller")
    worker.start()
    worker.join()
    assert cancellation.cancelled and calls == ["canceller"]


def test_a_callback_registered_after_the_cancel_runs_at_once() -> None:
    cancellation, calls = Cancellation(), []
    cancellation.cancel()
    cancellation.on_cancel(lambda: calls.append("late"))
    assert calls == ["late"]


def test_an_unregistered_callback_is_not_called() -> None:
    cancellation, calls = Cancellation(), []
    unregister = cancellation.on_cancel(lambda: calls.append("gone"))
    cancellation.on_cancel(lambda: calls.append("kept"))
    unregister()
    cancellation.cancel()
    assert calls == ["kept"]


def test_a_failing_callback_does_not_stop_the_others_or_the_canceller(caplog) -> None:
    cancellation, calls = Cancellation(), []
    cancellation.on_cancel(lambda: 1 / 0)
    cancellation.on_cancel(lambda: calls.append("second"))
    cancellation.cancel()
    assert calls == ["second"]
    assert "cancellation callback failed" in caplog.text
