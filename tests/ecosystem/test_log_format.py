"""Log set-up: text or JSON lines, access lines visible at the default level, clear errors."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from modeldeploy.app import create_app
from modeldeploy.cli import build_parser, main
from modeldeploy.config import parse_config
from modeldeploy.errors import ConfigError
from modeldeploy.logs import ACCESS_LOGGER, LOG_FORMAT_ENV, JsonFormatter, configure_logging
from modeldeploy.registry import Registry


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers: put pytest's back afterwards."""
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    handlers, root_level, access_level = root.handlers[:], root.level, access.level
    yield
    root.handlers[:] = handlers
    root.setLevel(root_level)
    access.setLevel(access_level)


def test_json_formatter_puts_extra_fields_at_top_level() -> None:
    record = logging.LogRecord("modeldeploy.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.request_id, record.status = "abc", 200
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x" and line["logger"] == "modeldeploy.access" and line["level"] == "INFO"
    assert (line["request_id"], line["status"]) == ("abc", 200)
    assert "args" not in line and "msg" not in line


def test_json_formatter_keeps_the_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert "RuntimeError: boom" in json.loads(JsonFormatter().format(record))["exception"]


@pytest.mark.parametrize(("level", "access_level"), [("WARNING", logging.INFO), ("DEBUG", logging.DEBUG),
                                                      ("ERROR", logging.ERROR)])
def test_access_lines_show_unless_errors_only(restore_logging: None, level: str, access_level: int) -> None:
    configure_logging(level, "text")
    assert logging.getLogger(ACCESS_LOGGER).getEffectiveLevel() == access_level


def test_unknown_format_is_a_clear_error(restore_logging: None) -> None:
    with pytest.raises(ConfigError, match="log format must be one of text, json, got 'xml'"):
        configure_logging("INFO", "xml")


def test_cli_reads_the_format_from_the_environment(restore_logging: None, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(LOG_FORMAT_ENV, "xml")
    assert main(["list"]) == 1
    assert "log format must be one of text, json, got 'xml'" in capsys.readouterr().err


def test_text_access_line_of_an_in_process_request(restore_logging: None) -> None:
    configure_logging("WARNING", "text")
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)
    app = create_app(registry=Registry(parse_config({"serve": ["sentiment"]})))
    response = app.test_client().get("/v2/models/sentiment", headers={"X-Request-ID": "text-line-1"})
    assert response.status_code == 200
    logging.getLogger().handlers[0].flush()  # lines are written on the handler's own thread
    line = stream.getvalue().strip()
    assert " INFO modeldeploy.access: GET /v2/models/sentiment 200 model=sentiment " in line
    assert line.endswith("ms request_id=text-line-1")


@pytest.mark.parametrize("argv", [["--log-format", "json", "serve"], ["serve", "--log-format", "json"]])
def test_serve_takes_the_format_before_or_after_the_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).log_format == "json"


class _HeldStream:
    """A stream whose first write waits until released, so the lines logged meanwhile queue up and
    go out together; it records every write."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        if not self.writes:
            self.release.wait(10)
        self.writes.append(text)

    def flush(self) -> None:
        pass


def test_lines_waiting_together_go_out_in_whole_line_writes_a_pipe_never_splits() -> None:
    from modeldeploy.logs import ATOMIC_WRITE_BYTES, BackgroundStreamHandler

    stream = _HeldStream()
    handler = BackgroundStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    first = logging.LogRecord("t", logging.INFO, __file__, 1, "first", None, None)
    handler.emit(first)
    long_line = "x" * (ATOMIC_WRITE_BYTES + 10)
    messages = [f"line {n} " + "é" * 40 for n in range(300)] + [long_line, "after the long one"]
    for message in messages:
        handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None))
    stream.release.set()
    handler.flush()
    handler.close()
    assert "".join(stream.writes) == "first\n" + "".join(f"{message}\n" for message in messages)
    queued = stream.writes[1:]
    assert len(queued) > 5  # the ~30 KB queued behind the first write went out in several writes
    assert all(write.endswith("\n") for write in queued)
    assert all(len(write.encode()) <= ATOMIC_WRITE_BYTES for write in queued if long_line not in write)
    assert f"{long_line}\n" in queued  # a record longer than a pipe's atomic write goes out alone, whole
