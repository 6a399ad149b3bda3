"""Structured logs: an event plus key/value fields, as text for people or JSON for machines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from runtime.logs import configure, get_logger


@pytest.fixture
def stream():
    out = io.StringIO()
    yield out
    root = logging.getLogger("sniper")
    for handler in list(root.handlers):
        if getattr(handler, "_sniper", False):
            root.removeHandler(handler)
    root.propagate = True
    root.setLevel(logging.NOTSET)


class TestStructuredLogs:
    def test_json_lines_carry_event_and_fields(self, stream: io.StringIO) -> None:
        """--log-format json writes one JSON object per line with ts, level, logger, event and fields."""
        configure("info", "json", stream)
        get_logger("actor.whale", actor="whale").bind(asset="SOL").warning(
            "bad_message", subject="sniper.tick.SOL", size=3
        )
        doc = json.loads(stream.getvalue())
        assert {k: doc[k] for k in ("level", "logger", "event", "actor", "asset", "subject", "size")} == {
            "level": "warning",
            "logger": "sniper.actor.whale",
            "event": "bad_message",
            "actor": "whale",
            "asset": "SOL",
            "subject": "sniper.tick.SOL",
            "size": 3,
        }
        assert doc["ts"].endswith("+00:00")

    def test_console_lines_are_key_value(self, stream: io.StringIO) -> None:
        """The console format is `HH:MM:SS level logger event key=value`."""
        configure("info", "console", stream)
        get_logger("supervisor").info("actor_restarting", actor="whale", delay=0.5)
        line = stream.getvalue().strip()
        assert line.split()[1:] == ["info", "sniper.supervisor", "actor_restarting", "actor=whale", "delay=0.5"]

    def test_level_filters_and_exceptions_are_kept(self, stream: io.StringIO) -> None:
        """Below the level nothing is written; exception() includes the traceback."""
        configure("warning", "json", stream)
        log = get_logger("x")
        log.info("hidden")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", step=2)
        (doc,) = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert doc["event"] == "failed" and "ValueError: boom" in doc["exception"]
