"""Log lines: JSON for collectors, one readable line on a terminal, the same fields in both."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from kernel import logs
from kernel.config import Settings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restored() -> Iterator[None]:
    """``configure`` rewires the root logger and the quiet libraries: put them back afterwards."""
    root = logging.getLogger()
    names = (*logs.QUIET_LIBRARIES, "uvicorn", "uvicorn.error", "uvicorn.access")
    touched = [logging.getLogger(name) for name in names]
    saved = [(lg, lg.level, lg.disabled, lg.propagate, lg.handlers[:]) for lg in touched]
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for lg, level, disabled, propagate, handlers in saved:
            lg.setLevel(level)
            lg.disabled, lg.propagate, lg.handlers[:] = disabled, propagate, handlers


def access_record(**extra: object) -> logging.LogRecord:
    token = logs.request_id.set("3fa9c2d1e4b5a697")
    try:
        record = logging.getLogger("baton.access").makeRecord(
            "baton.access", logging.INFO, __file__, 1, "request", (), None,
            extra={"method": "GET", "route": "/s/{token}", "status": 200, "ms": 1.25, **extra},
        )
    finally:
        logs.request_id.reset(token)
    return record


def test_a_text_line_has_time_level_logger_short_request_id_message_and_extras() -> None:
    line = logs.TextFormatter().format(access_record())
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} INFO  baton\.access \[3fa9c2d1\] "
                        r"request method=GET route=/s/\{token\} status=200 ms=1\.25", line), line


def test_a_json_line_carries_the_same_fields_and_the_whole_request_id() -> None:
    entry = json.loads(logs.JSONFormatter().format(access_record()))
    assert entry["logger"] == "baton.access" and entry["level"] == "info" and entry["msg"] == "request"
    assert entry["request_id"] == "3fa9c2d1e4b5a697"
    assert {k: entry[k] for k in ("method", "route", "status", "ms")} == {
        "method": "GET", "route": "/s/{token}", "status": 200, "ms": 1.25}


def test_text_values_are_quoted_when_needed_and_control_characters_cannot_forge_a_line() -> None:
    record = access_record(reason="two words", detail={"a": [1, 2]}, sneaky="x\nFAKE ERROR \x1b[2J\x9b",
                           empty="")
    record.msg = "hello\r\nINFO baton forged"
    line = logs.TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\x9b" not in line
    assert 'reason="two words"' in line and 'detail={"a": [1, 2]}' in line and 'empty=""' in line
    assert "hello\\x0d\\x0aINFO baton forged" in line
    assert 'sneaky="x\\nFAKE ERROR \\u001b[2J\\x9b"' in line


def test_a_text_traceback_follows_its_line_indented() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("baton.worker").makeRecord(
            "baton.worker", logging.ERROR, __file__, 1, "worker round failed", (), exc_info=sys.exc_info())
    first, *trace = logs.TextFormatter().format(record).split("\n")
    assert first.endswith("ERROR baton.worker worker round failed")
    assert trace[0].startswith("    Traceback") and trace[-1] == "    ValueError: boom"


def test_auto_writes_text_on_a_terminal_and_json_elsewhere(restored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal, pipe = Terminal(), io.StringIO()
    logs.configure("INFO", log_format="auto", stream=terminal)
    logging.getLogger("baton.test").info("hello", extra={"case": "BAG-1"})
    logs.configure("INFO", log_format="auto", stream=pipe)
    logging.getLogger("baton.test").info("hello", extra={"case": "BAG-1"})

    shown = terminal.getvalue()
    assert "\x1b[32mINFO \x1b[0m baton.test hello case=BAG-1" in shown  # coloured level on a terminal
    assert json.loads(pipe.getvalue())["case"] == "BAG-1"


def test_json_or_text_when_asked_whatever_the_stream(restored: None) -> None:
    terminal, pipe = Terminal(), io.StringIO()
    logs.configure("INFO", log_format="json", stream=terminal)
    logging.getLogger("baton.test").warning("asked for JSON")
    logs.configure("INFO", log_format="text", stream=pipe)
    logging.getLogger("baton.test").warning("asked for text")

    assert json.loads(terminal.getvalue())["msg"] == "asked for JSON"
    assert pipe.getvalue().split(" ", 1)[1] == "WARNING baton.test asked for text\n"  # no colour off a terminal


def test_no_color_turns_colours_off_on_a_terminal(restored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    logs.configure("INFO", stream=terminal)
    logging.getLogger("baton.test").info("plain")
    assert "\x1b" not in terminal.getvalue() and " INFO  baton.test plain" in terminal.getvalue()


def test_libraries_and_alembic_stay_quiet_at_info_in_both_formats(restored: None) -> None:
    for log_format in ("json", "text"):
        stream = Terminal()
        logs.configure("DEBUG", log_format=log_format, stream=stream)
        logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate.schemas")
        logging.getLogger("sqlalchemy.engine").info("SELECT ... [secret parameters]")
        assert stream.getvalue() == ""


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "auto"
    monkeypatch.setenv("BATON_LOG_FORMAT", "JSON")
    assert Settings().log_format == "json"
    monkeypatch.setenv("BATON_LOG_FORMAT", "yaml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()
