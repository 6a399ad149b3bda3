"""Recordings: messages kept byte-for-byte, read back in order, replayed in clock time."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from messages import ContractError
from runtime import Envelope, MemoryBus, VirtualClock
from sniper.recording import Line, RecordingError, StreamRecorder, encode_line, read_recording, replay, to_line

JSON_SAMPLES = [
    b'{"type":"tick","v":1,"asset":"SOL","cycle":3}',
    b'{ "spaced" : [1, 2.50, 3e2] , "k":null }',
    b'{"unicode":"caf\xc3\xa9 \xe2\x82\xbf","escaped":"\\u00e9\\n"}',
    b"[]",
    b"42",
    b'"just a string"',
    b"true",
]
NON_JSON_SAMPLES = [
    b"",
    b"not json",
    b"{broken",
    b"\xff\xfe\x00\x01",
    b"\x80abc",
    b'{"a": 1} trailing',
    b'{"bad-utf8":"\xff"}',
]


def write_lines(path: Path, lines: Iterable[Line]) -> Path:
    path.write_bytes(b"".join(encode_line(line) + b"\n" for line in lines))
    return path


@pytest.fixture
async def clocked_bus() -> AsyncIterator[tuple[MemoryBus, VirtualClock]]:
    clock = VirtualClock(autojump=True)
    bus = MemoryBus(clock=clock)
    yield bus, clock
    await bus.close()
    clock.stop_autojump()


class TestToLine:
    @pytest.mark.parametrize("data", JSON_SAMPLES)
    def test_json_is_embedded_unchanged(self, data: bytes) -> None:
        """Valid JSON becomes msg (Raw), byte-for-byte, and no raw_b64."""
        line = to_line(12.5, "sniper.tick.SOL", data)
        assert (line.t, line.subject, line.raw_b64, line.data) == (12.5, "sniper.tick.SOL", None, data)
        assert data in encode_line(line)

    @pytest.mark.parametrize("data", NON_JSON_SAMPLES)
    def test_non_json_is_kept_as_base64(self, data: bytes) -> None:
        """Bytes that are not JSON (including invalid UTF-8) become raw_b64 and give back the same bytes."""
        line = to_line(1.0, "sniper.x", data)
        assert (bytes(line.msg), line.raw_b64, line.data) == (b"", base64.b64encode(data).decode(), data)

    @pytest.mark.parametrize("data", JSON_SAMPLES + NON_JSON_SAMPLES)
    def test_encoded_line_round_trips(self, data: bytes, tmp_path: Path) -> None:
        """Encoding a line, writing it and reading it back gives the original bytes exactly."""
        path = write_lines(tmp_path / "r.jsonl", [to_line(3.0, "sniper.a", data)])
        [line] = read_recording(path)
        assert (line.t, line.subject, line.data) == (3.0, "sniper.a", data)

    @pytest.mark.parametrize(
        "data",
        [b'{\n  "type": "tick",\n  "cycle": 1\n}', b'{"a":\r\n1}'],
        ids=["pretty-printed", "crlf"],
    )
    def test_json_with_newlines_survives_the_file(self, data: bytes, tmp_path: Path) -> None:
        """A JSON message spread over several lines still reads back as one recording line, unchanged."""
        path = write_lines(tmp_path / "r.jsonl", [to_line(1.0, "sniper.a", data), to_line(2.0, "sniper.b", b"{}")])
        assert [(line.subject, line.data) for line in read_recording(path)] == [("sniper.a", data), ("sniper.b", b"{}")]

    def test_encode_line_writes_one_field(self) -> None:
        """encode_line gives a JSON line only msg and a raw line only raw_b64."""
        assert (encode_line(to_line(1.0, "s", b"{}")), encode_line(to_line(1.0, "s", b"x"))) == (
            b'{"t":1.0,"subject":"s","msg":{}}',
            b'{"t":1.0,"subject":"s","raw_b64":"eA=="}',
        )


class TestReadRecording:
    LINES = (
        to_line(1.0, "sniper.tick.SOL", b'{"n":1}'),
        to_line(2.0, "sniper.data.whale.SOL", b'{"n":2}'),
        to_line(3.0, "sniper.tick.BTC", b"\x00raw"),
        to_line(4.0, "sniper.health.SOL", b'{"n":4}'),
        to_line(5.0, "other.tick.SOL", b'{"n":5}'),
    )

    @pytest.mark.parametrize(
        ("pattern", "subjects"),
        [
            (
                None,
                ["sniper.tick.SOL", "sniper.data.whale.SOL", "sniper.tick.BTC", "sniper.health.SOL", "other.tick.SOL"],
            ),
            ("sniper.>", ["sniper.tick.SOL", "sniper.data.whale.SOL", "sniper.tick.BTC", "sniper.health.SOL"]),
            ("sniper.tick.*", ["sniper.tick.SOL", "sniper.tick.BTC"]),
            ("*.tick.SOL", ["sniper.tick.SOL", "other.tick.SOL"]),
            ("sniper.data.whale.SOL", ["sniper.data.whale.SOL"]),
            ("nothing.>", []),
        ],
    )
    def test_subject_filter(self, pattern: str | None, subjects: list[str], tmp_path: Path) -> None:
        """Only lines whose subject matches the pattern are yielded, in file order."""
        path = write_lines(tmp_path / "r.jsonl", self.LINES)
        assert [line.subject for line in read_recording(path, subjects=pattern)] == subjects

    def test_blank_lines_are_skipped(self, tmp_path: Path) -> None:
        """Empty and whitespace-only lines are ignored."""
        path = tmp_path / "r.jsonl"
        path.write_bytes(b"\n" + encode_line(self.LINES[0]) + b"\n   \n\n" + encode_line(self.LINES[1]) + b"\n")
        assert [line.t for line in read_recording(path)] == [1.0, 2.0]

    @pytest.mark.parametrize(
        ("bad", "number"),
        [
            (b"not json at all", 3),
            (b'{"t": "yesterday", "subject": "s", "msg": {}}', 3),
            (b'{"subject": "s", "msg": {}}', 3),
            (b'{"t": 1.0, "subject": "s"}', 3),
            (b'{"t": 1.0, "subject": "s", "msg": {"half"', 3),
        ],
        ids=["garbage", "bad-t", "no-t", "no-payload", "truncated"],
    )
    def test_corrupt_line_names_file_and_line(self, bad: bytes, number: int, tmp_path: Path) -> None:
        """A corrupt line raises RecordingError naming file:line (blank lines still count)."""
        path = tmp_path / "corrupt.jsonl"
        path.write_bytes(encode_line(self.LINES[0]) + b"\n\n" + bad + b"\n" + encode_line(self.LINES[1]) + b"\n")
        lines = read_recording(path)
        assert next(lines).t == 1.0
        with pytest.raises(RecordingError, match=f"{path}:{number}:"):
            next(lines)

    def test_recording_error_is_a_contract_error(self) -> None:
        """RecordingError belongs to the ContractError family."""
        assert issubclass(RecordingError, ContractError)

    def test_reads_the_committed_recordings(self) -> None:
        """The recordings shipped in tests/recordings read without error."""
        folder = Path(__file__).parents[1] / "recordings"
        counts = {p.name: sum(1 for _ in read_recording(p)) for p in sorted(folder.glob("*.jsonl"))}
        assert counts and all(n > 0 for n in counts.values())


class TestStreamRecorder:
    async def test_records_subjects_and_bytes_in_order(
        self, clocked_bus: tuple[MemoryBus, VirtualClock], tmp_path: Path
    ) -> None:
        """Every matching message is written with its subject, exact bytes and receive time, in order."""
        bus, clock = clocked_bus
        sent = [
            ("sniper.tick.SOL", b'{"type":"tick","cycle":0}'),
            ("sniper.data.whale.SOL", b'{ "pretty" : true }'),
            ("sniper.junk", b"\xff\xfe not json"),
            ("sniper.tick.SOL", b'{"type":"tick","cycle":1}'),
        ]
        path = tmp_path / "rec.jsonl"
        with path.open("wb") as fh:
            recorder = await StreamRecorder(bus, clock, fh, subjects="sniper.>").start()
            for i, (subject, data) in enumerate(sent):
                await bus.publish(subject, data)
                await bus.publish("elsewhere.tick.SOL", b"{}")
                await bus.flush()
                await clock.sleep(1.5 if i % 2 else 0.25)
            await recorder.stop()
        lines = list(read_recording(path))
        start = VirtualClock.EPOCH
        assert [(line.subject, line.data) for line in lines] == sent
        assert [line.t for line in lines] == [start, start + 0.25, start + 1.75, start + 2.0]
        assert recorder.count == 4

    async def test_stop_unsubscribes(self, clocked_bus: tuple[MemoryBus, VirtualClock], tmp_path: Path) -> None:
        """After stop() nothing more is recorded, and stop() twice is harmless."""
        bus, clock = clocked_bus
        path = tmp_path / "rec.jsonl"
        with path.open("wb") as fh:
            recorder = await StreamRecorder(bus, clock, fh, subjects="sniper.>").start()
            await bus.publish("sniper.a", b"{}")
            await bus.flush()
            await recorder.stop()
            await bus.publish("sniper.b", b"{}")
            await bus.flush()
            await recorder.stop()
        assert ([line.subject for line in read_recording(path)], recorder.count) == (["sniper.a"], 1)

    @pytest.mark.parametrize("data", [b'{"bad-utf8":"\xff"}', b'{\n"a": 1\n}'], ids=["invalid-utf8-json", "pretty"])
    async def test_hostile_payloads_are_recorded(
        self, data: bytes, clocked_bus: tuple[MemoryBus, VirtualClock], tmp_path: Path
    ) -> None:
        """A hostile payload is recorded and reads back byte-for-byte (not dropped, not corrupting the file)."""
        bus, clock = clocked_bus
        path = tmp_path / "rec.jsonl"
        with path.open("wb") as fh:
            recorder = await StreamRecorder(bus, clock, fh, subjects="sniper.>").start()
            await bus.publish("sniper.x", data)
            await bus.publish("sniper.y", b"{}")
            await bus.flush()
            await recorder.stop()
        assert ([(line.subject, line.data) for line in read_recording(path)], bus.stats.handler_errors) == (
            [("sniper.x", data), ("sniper.y", b"{}")],
            0,
        )


async def collect(bus: MemoryBus, clock: VirtualClock, pattern: str = ">") -> list[tuple[float, str, bytes]]:
    """Subscribe and return a list that fills with (virtual time, subject, data) per arrival."""
    seen: list[tuple[float, str, bytes]] = []

    async def on(env: Envelope) -> None:
        seen.append((clock.monotonic(), env.subject, env.data))

    await bus.subscribe(pattern, on)
    return seen


def spaced(times: list[float], start: float = 1_795_567_160.0) -> list[Line]:
    return [to_line(start + t, f"sniper.m.{i}", b'{"i":%d}' % i) for i, t in enumerate(times)]


class TestReplay:
    @pytest.mark.parametrize(
        ("speed", "expected"),
        [
            (1.0, [0.0, 0.5, 2.0, 2.0, 10.0]),
            (2.0, [0.0, 0.25, 1.0, 1.0, 5.0]),
            (0.5, [0.0, 1.0, 4.0, 4.0, 20.0]),
            (10.0, [0.0, 0.05, 0.2, 0.2, 1.0]),
        ],
    )
    async def test_original_spacing_divided_by_speed(
        self, speed: float, expected: list[float], clocked_bus: tuple[MemoryBus, VirtualClock]
    ) -> None:
        """Messages arrive at their recorded offsets divided by speed, in virtual time, in order."""
        bus, clock = clocked_bus
        seen = await collect(bus, clock)
        lines = spaced([0.0, 0.5, 2.0, 2.0, 10.0])
        count = await replay(lines, bus, clock, speed=speed)
        await bus.flush()
        assert count == 5
        assert [s for _, s, _ in seen] == [line.subject for line in lines]
        assert [d for _, _, d in seen] == [line.data for line in lines]
        assert [t for t, _, _ in seen] == pytest.approx(expected)

    async def test_offsets_are_relative_to_replay_start(self, clocked_bus: tuple[MemoryBus, VirtualClock]) -> None:
        """Replay starting later in clock time keeps the recorded spacing from its own start."""
        bus, clock = clocked_bus
        await clock.sleep(100)
        seen = await collect(bus, clock)
        await replay(spaced([5.0, 6.0, 8.0]), bus, clock)
        await bus.flush()
        assert [t for t, _, _ in seen] == [100.0, 101.0, 103.0]

    async def test_raw_lines_replay_their_bytes(
        self, clocked_bus: tuple[MemoryBus, VirtualClock], tmp_path: Path
    ) -> None:
        """Lines from a file, JSON or raw_b64, are published with their original bytes."""
        bus, clock = clocked_bus
        payloads = [b'{"a": 1}', b"\xff\x00binary", b""]
        path = write_lines(tmp_path / "r.jsonl", [to_line(float(i), "sniper.p", p) for i, p in enumerate(payloads)])
        seen = await collect(bus, clock)
        await replay(read_recording(path), bus, clock)
        await bus.flush()
        assert [d for _, _, d in seen] == payloads

    async def test_record_then_replay_reproduces_the_stream(
        self, clocked_bus: tuple[MemoryBus, VirtualClock], tmp_path: Path
    ) -> None:
        """Recording a stream and replaying the file reproduces subjects, bytes and spacing."""
        bus, clock = clocked_bus
        sent = [(0.0, "sniper.a", b'{"x":1}'), (3.0, "sniper.b", b"raw\x01"), (4.5, "sniper.a", b"[]")]
        path = tmp_path / "rec.jsonl"
        with path.open("wb") as fh:
            recorder = await StreamRecorder(bus, clock, fh, subjects="sniper.>").start()
            for at, subject, data in sent:
                await clock.sleep_until(at)
                await bus.publish(subject, data)
                await bus.flush()
            await recorder.stop()
        await clock.sleep(60)
        seen = await collect(bus, clock)
        await replay(read_recording(path), bus, clock)
        await bus.flush()
        base = seen[0][0]
        assert [(t - base, s, d) for t, s, d in seen] == sent

    @pytest.mark.parametrize("speed", [0.0, -1.0, -0.5])
    async def test_non_positive_speed_is_refused(
        self, speed: float, clocked_bus: tuple[MemoryBus, VirtualClock]
    ) -> None:
        """speed <= 0 raises ValueError before anything is published."""
        bus, clock = clocked_bus
        with pytest.raises(ValueError, match="speed"):
            await replay(spaced([0.0]), bus, clock, speed=speed)
        assert bus.stats.published == 0

    async def test_empty_recording_publishes_nothing(self, clocked_bus: tuple[MemoryBus, VirtualClock]) -> None:
        """An empty recording replays zero messages and takes no time."""
        bus, clock = clocked_bus
        assert (await replay([], bus, clock), bus.stats.published, clock.monotonic()) == (0, 0, 0.0)

    async def test_hour_long_recording_replays_fast(self, clocked_bus: tuple[MemoryBus, VirtualClock]) -> None:
        """An hour of recorded messages replays in an hour of virtual time but well under a second of real time."""
        bus, clock = clocked_bus
        seen = await collect(bus, clock)
        lines = spaced([float(t) for t in range(0, 3601, 15)])
        started = time.perf_counter()
        count = await replay(lines, bus, clock)
        await bus.flush()
        elapsed = time.perf_counter() - started
        assert (count, len(seen), clock.monotonic(), seen[-1][0]) == (241, 241, 3600.0, 3600.0)
        assert elapsed < 0.5

    async def test_replay_with_manual_advance(self) -> None:
        """Without autojump, nothing beyond the first message is published until time is advanced."""
        clock = VirtualClock()
        bus = MemoryBus(clock=clock)
        try:
            seen = await collect(bus, clock)
            task = asyncio.create_task(replay(spaced([0.0, 30.0, 60.0]), bus, clock))
            await clock.advance(0)
            first = len(seen)
            await clock.advance(29.9)
            before = len(seen)
            await clock.advance(0.1)
            after = len(seen)
            await clock.advance(30)
            assert ((first, before, after, len(seen)), await task) == ((1, 1, 2, 3), 3)
        finally:
            await bus.close()
