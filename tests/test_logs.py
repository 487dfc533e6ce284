"""Structured logs: one JSON object a line, with the `extra=` fields as keys."""

from __future__ import annotations

import json
import logging

import pytest

from app.logs import JsonFormatter, configure_logging


def test_json_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("gmail_sync.worker", logging.INFO, "", 0, "synced %s", ("a",), None)
    record.mailbox = "support@shop.test"
    record.fetched = 12
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "synced a"
    assert line["level"] == "info"
    assert line["mailbox"] == "support@shop.test"
    assert line["fetched"] == 12
    assert "args" not in line


def test_configure_logging_switches_format(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(level="info", fmt="json")
        logging.getLogger("x").info("hello", extra={"n": 1})
        assert json.loads(capsys.readouterr().err.strip()) | {"at": None} == {
            "at": None, "level": "info", "logger": "x", "message": "hello", "n": 1,
        }  # fmt: skip
        configure_logging(level="warning", fmt="text")
        logging.getLogger("x").info("hidden")
        assert capsys.readouterr().err == ""
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
