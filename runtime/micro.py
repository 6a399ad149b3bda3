"""NATS micro services over any `Bus`: discovery and statistics for request/reply subscriptions.

The micro protocol (NATS ADR-32, nats-py's `nats.micro`) lets any NATS client
find the services on an account and ask each running instance about itself::

    $SRV.PING[.<name>[.<id>]]    io.nats.micro.v1.ping_response   who is there
    $SRV.INFO[.<name>[.<id>]]    io.nats.micro.v1.info_response   endpoints: subject, queue group, metadata
    $SRV.STATS[.<name>[.<id>]]   io.nats.micro.v1.stats_response  per endpoint: requests, errors, time

A process declares one `Service` (name, semantic version, description) in
`Context.service`; an actor makes one of its subscriptions an endpoint by
giving its `Sub` an `Endpoint` (name, metadata such as request and response
schemas). The actor's own subscription stays the one that answers the
endpoint's requests, with everything `Sub` gives it (typed decoding, refusal
of bad input, rate budget, queue group, restarts by the supervisor); its
`Delivery` counts what STATS reports. `Service.start` subscribes the nine
discovery subjects (not in a queue group: every instance answers).

Why not `nats.micro.add_service`: it takes a nats-py client (so no MemoryBus,
no virtual time) and subscribes every endpoint itself, so the command
subjects would get a second subscriber answering the same request, or lose
the validation and limits the actors' subscriptions have. The answers are
built with nats.micro's own types (`ServicePing`, `ServiceInfo`,
`ServiceStats`), so the wire format is exactly nats.micro's, and nats.micro's
`from_dict` reads them back.

What counts (per endpoint, kept across restarts of the actor serving it):
`num_requests` every request handed to the endpoint's handler (or shed by its
rate budget); `num_errors` each request that was refused as undecodable or
invalid, shed, crashed its handler, or got a reply the endpoint's `failed`
reads as a failure (``ok: false``), at most once per request; `last_error`
the first error text of the latest failed request (its cause: "bad request:
...", not the error reply that followed); `processing_time` the clock time spent in decoding and
handling, in nanoseconds (on a virtual clock, virtual time).

Discovery requests are bounded like every control-plane input: a queue of
`DISCOVERY_PENDING` and `DISCOVERY_RATE` answers per second, the rest dropped
unanswered (and counted in `Service.shed`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from nats.micro.service import (
    NAME_REGEX,
    SEMVER_REGEX,
    EndpointInfo,
    EndpointStats,
    ServiceInfo,
    ServicePing,
    ServiceStats,
)
from nats.nuid import NUID

from messages.subjects import MICRO_VERBS, micro_subjects

from .bus import Bus, Envelope, Subscription
from .clock import Clock
from .errors import BusError, SetupError
from .flow import TokenBucket
from .logs import get_logger

log = get_logger("micro")

#: Discovery requests answered per second at most, per service instance (bursts up to the same number).
DISCOVERY_RATE = 200.0
#: Discovery requests that may wait for an answer before the bus drops the rest.
DISCOVERY_PENDING = 1024
#: Longest `last_error` kept (characters).
MAX_LAST_ERROR = 1000


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What makes a `Sub` a micro endpoint: the name `$SRV.INFO` lists it under, and its metadata.

    `metadata` values are strings (the protocol's map of string to string);
    request and response JSON Schemas go there as JSON text. `failed` reads a
    reply the handler sent (`Actor.reply`) and returns its error text if it
    reports a failure, so STATS counts refused commands as errors too.
    """

    name: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    failed: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if not NAME_REGEX.match(self.name):
            raise SetupError(f"endpoint name {self.name!r}: use letters, digits, '-' or '_'")


class EndpointRecord:
    """One endpoint of a service: where it listens and what it has counted."""

    __slots__ = ("endpoint", "last_error", "num_errors", "num_requests", "processing_time", "queue_group", "subject")

    def __init__(self, endpoint: Endpoint, subject: str, queue_group: str) -> None:
        self.endpoint = endpoint
        self.subject = subject
        self.queue_group = queue_group
        self.num_requests = 0
        self.num_errors = 0
        self.processing_time = 0  # nanoseconds
        self.last_error = ""

    def begin(self) -> contextvars.Token[_Request | None]:
        """A request arrives: count it, and make it the one errors and replies are charged to."""
        self.num_requests += 1
        return _CURRENT.set(_Request(self))

    def end(self, token: contextvars.Token[_Request | None], seconds: float) -> None:
        """The request's handler returned after `seconds` (clock time)."""
        _CURRENT.reset(token)
        self.processing_time += max(0, round(seconds * 1e9))

    def info(self) -> EndpointInfo:
        return EndpointInfo(
            name=self.endpoint.name,
            subject=self.subject,
            queue_group=self.queue_group,
            metadata=dict(self.endpoint.metadata),
        )

    def stats(self) -> EndpointStats:
        return EndpointStats(
            name=self.endpoint.name,
            subject=self.subject,
            queue_group=self.queue_group,
            num_requests=self.num_requests,
            num_errors=self.num_errors,
            processing_time=self.processing_time,
            average_processing_time=self.processing_time // self.num_requests if self.num_requests else 0,
            last_error=self.last_error,
        )


class _Request:
    """The request being handled: its endpoint, and whether an error was counted for it already."""

    __slots__ = ("errored", "record")

    def __init__(self, record: EndpointRecord) -> None:
        self.record = record
        self.errored = False

    def fail(self, error: str) -> None:
        if not self.errored:  # the first error is the cause; what follows (an error reply) is its consequence
            self.errored = True
            self.record.num_errors += 1
            self.record.last_error = error[:MAX_LAST_ERROR]


#: The request the running task is handling, if it came in through an endpoint (set by `EndpointRecord.begin`).
_CURRENT: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("micro_request", default=None)


def request_failed(error: str) -> None:
    """Count the request being handled as an error (once per request, with its first error's text).

    A no-op outside an endpoint's request, so the runtime calls it wherever a
    message is refused, shed or crashes its handler.
    """
    current = _CURRENT.get()
    if current is not None:
        current.fail(error)


def replied(reply: Any) -> None:
    """A reply to the request being handled went out: an error if its endpoint's `failed` says so."""
    current = _CURRENT.get()
    if current is not None and (failed := current.record.endpoint.failed) is not None:
        error = failed(reply)
        if error is not None:
            current.fail(error)


class Service:
    """One instance of a micro service: its identity, its endpoints, and the discovery answers."""

    def __init__(
        self,
        name: str,
        version: str,
        *,
        clock: Clock,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> None:
        if not NAME_REGEX.match(name):
            raise SetupError(f"service name {name!r}: use letters, digits, '-' or '_'")
        if not SEMVER_REGEX.match(version):
            raise SetupError(f"service version {version!r} is not a semantic version (1.2.3)")
        self.name = name
        self.version = version
        self.description = description
        self.metadata = dict(metadata or {})
        self.clock = clock
        #: Unique per instance, like nats.micro's (a NUID): `$SRV.<VERB>.<name>.<id>` reaches this one.
        self.id = id or NUID().next().decode()
        self.endpoints: list[EndpointRecord] = []
        #: Wall-clock start (seconds since the epoch), None until `start`.
        self.started: float | None = None
        #: Discovery requests dropped unanswered by the rate budget.
        self.shed = 0
        self._subs: list[Subscription] = []
        self._budget = TokenBucket(DISCOVERY_RATE, clock.monotonic())
        self._info: bytes | None = None  # the INFO answer, rebuilt when an endpoint is added

    def __repr__(self) -> str:
        return f"Service({self.name!r}, {self.version!r}, id={self.id!r}, endpoints={len(self.endpoints)})"

    def endpoint(self, endpoint: Endpoint, subject: str, queue_group: str | None) -> EndpointRecord:
        """The record of `endpoint` on `subject`, added on first use; a restarted actor gets its old counters."""
        for record in self.endpoints:
            if record.endpoint.name == endpoint.name and record.subject == subject:
                if record.endpoint != endpoint:
                    record.endpoint = endpoint
                    self._info = None
                return record
        record = EndpointRecord(endpoint, subject, queue_group or "")
        self.endpoints.append(record)
        self._info = None
        return record

    @property
    def running(self) -> bool:
        return bool(self._subs)

    async def start(self, bus: Bus) -> None:
        """Answer PING, INFO and STATS on `bus` (each on ``$SRV.<VERB>``, ``.<name>``, ``.<name>.<id>``).

        Returns once the server holds the subscriptions (a flush), so a PING
        sent by any client after `start` returns reaches this instance.
        """
        if self._subs:
            return
        self.started = self.clock.now()
        answers: dict[str, Callable[[], bytes]] = {"PING": self._ping, "INFO": self._info_bytes, "STATS": self._stats}
        try:
            for verb in MICRO_VERBS:
                handler = self._answerer(bus, answers[verb])
                for subject in micro_subjects(verb, self.name, self.id):
                    self._subs.append(await bus.subscribe(subject, handler, pending=DISCOVERY_PENDING))
            await bus.flush()
        except BaseException:
            await self.stop()
            raise
        log.info("service_started", service=self.name, id=self.id, version=self.version, endpoints=len(self.endpoints))

    async def stop(self) -> None:
        """Stop answering discovery requests (the endpoints' own subscriptions are their actors')."""
        subs, self._subs = self._subs, []
        for sub in subs:
            await sub.unsubscribe()

    # -- the answers, as nats.micro builds them ------------------------------------
    def ping(self) -> ServicePing:
        return ServicePing(id=self.id, name=self.name, version=self.version, metadata=dict(self.metadata))

    def info(self) -> ServiceInfo:
        return ServiceInfo(
            name=self.name,
            id=self.id,
            version=self.version,
            description=self.description,
            endpoints=[record.info() for record in self.endpoints],
            metadata=dict(self.metadata),
        )

    def stats(self) -> ServiceStats:
        started = self.clock.now() if self.started is None else self.started
        return ServiceStats(
            id=self.id,
            name=self.name,
            version=self.version,
            started=datetime.fromtimestamp(started, UTC),
            endpoints=[record.stats() for record in self.endpoints],
            metadata=dict(self.metadata),
        )

    def _ping(self) -> bytes:
        return msgspec.json.encode(self.ping().to_dict())

    def _info_bytes(self) -> bytes:
        if self._info is None:
            self._info = msgspec.json.encode(self.info().to_dict())
        return self._info

    def _stats(self) -> bytes:
        return msgspec.json.encode(self.stats().to_dict())

    def _answerer(self, bus: Bus, answer: Callable[[], bytes]) -> Callable[[Envelope], Awaitable[None]]:
        async def on_request(env: Envelope) -> None:
            if env.reply is None:  # not a request: nobody to answer
                return
            if not self._budget.take(self.clock.monotonic()):
                self.shed += 1
                return
            try:
                await bus.respond(env, answer())
            except BusError as exc:
                log.warning("service_answer_failed", subject=env.subject, error=str(exc))

        return on_request
