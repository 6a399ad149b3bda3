"""The pipeline process's event loop (SNIPER_LOOP) and garbage collector (SNIPER_GC)."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from messages import ConfigError
from sniper import process


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    """Each test leaves the collector as it found it (thresholds, nothing frozen)."""
    thresholds = gc.get_threshold()
    yield
    gc.set_threshold(*thresholds)
    gc.unfreeze()


def uvloop_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))


def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


class TestLoop:
    def test_the_standard_loop_by_default(self) -> None:
        assert process.loop_factory({}) == ("asyncio", None)
        assert process.run_process(self._which(), environ={}) == "asyncio"

    def test_uvloop_when_asked_and_installed(self) -> None:
        pytest.importorskip("uvloop")
        name, factory = process.loop_factory({"SNIPER_LOOP": "uvloop"})
        assert name == "uvloop" and factory is not None
        assert process.run_process(self._which(), environ={"SNIPER_LOOP": "uvloop"}) == "uvloop"

    def test_uvloop_asked_but_missing_falls_back_with_a_warning(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        uvloop_missing(monkeypatch)
        caplog.set_level(logging.WARNING, logger="sniper")
        assert process.run_process(self._which(), environ={"SNIPER_LOOP": "uvloop"}) == "asyncio"
        assert "uvloop_missing" in caplog.text

    def test_auto_takes_uvloop_if_importable_and_says_nothing_otherwise(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        assert process.loop_factory({"SNIPER_LOOP": "auto"})[0] == expected
        uvloop_missing(monkeypatch)
        caplog.set_level(logging.WARNING, logger="sniper")
        assert process.loop_factory({"SNIPER_LOOP": "Auto "}) == ("asyncio", None)
        assert "uvloop_missing" not in caplog.text

    def test_a_bad_value_is_a_configuration_error_naming_the_variable(self) -> None:
        main = self._which()
        with pytest.raises(ConfigError, match=r"SNIPER_LOOP='trio'.*asyncio, uvloop, auto"):
            process.run_process(main, environ={"SNIPER_LOOP": "trio"})
        assert inspect.getcoroutinestate(main) == inspect.CORO_CLOSED  # closed, not left un-awaited

    @staticmethod
    async def _which() -> str:
        return loop_module()


class TestGc:
    def test_tuned_makes_full_collections_rare_and_freezes_once_settled(self) -> None:
        async def main() -> tuple[Any, ...]:
            before = gc.get_freeze_count()
            await asyncio.sleep(0.05)
            return gc.get_threshold(), before, gc.get_freeze_count()

        gc.set_threshold(700, 10, 10)
        thresholds, before, after = process.run_process(main(), settle=0.01, environ={})
        assert thresholds == (700, 10, process.FULL_COLLECTION_EVERY)
        assert before == 0 and after > 0

    def test_no_freeze_without_a_settle_time(self) -> None:
        async def main() -> int:
            await asyncio.sleep(0.02)
            return gc.get_freeze_count()

        assert process.run_process(main(), environ={}) == 0

    def test_default_leaves_python_alone(self) -> None:
        async def main() -> tuple[Any, ...]:
            await asyncio.sleep(0.02)
            return gc.get_threshold(), gc.get_freeze_count()

        gc.set_threshold(700, 10, 10)
        assert process.run_process(main(), settle=0.01, environ={"SNIPER_GC": "default"}) == ((700, 10, 10), 0)

    def test_a_bad_value_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigError, match="SNIPER_GC"):
            process.gc_policy({"SNIPER_GC": "off"})

    def test_settled_after_one_cycle_of_every_asset(self) -> None:
        assert process.settle_after(5.0, 3.0) == process.STARTUP_ALLOWANCE + 8.0
