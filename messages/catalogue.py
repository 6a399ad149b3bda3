"""The catalogue of channels: which message travels on which subject, who sends it, who answers.

`Subjects` builds each subject; this table says what each one carries, so the
AsyncAPI document (`sniper asyncapi`) and the docs are derived from one place
instead of being written by hand. A parameter of a channel is a ``*`` of the
subject's wildcard form, in order (``signal.*`` -> ``signal.{asset}``).

`sent_by_sniper` is the direction from sniper's side: True for what bots
subscribe to (signals, health, events), False for what operators and bots send
to sniper (commands). A command has a `reply` type: it is request/reply.
Key-value buckets are channels too: an entry of bucket ``B`` under key ``K``
is a message on ``$KV.B.K``, which any NATS client can watch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._base import Message
from .alerts import Alert, AlertCommand, AlertLog, AlertReply, Mute
from .control import (
    CircuitCommand,
    CircuitReply,
    CircuitState,
    FlagChanged,
    FlagCommand,
    FlagReply,
    StatusQuery,
    StatusReply,
)
from .cycle import Health, Signal, Tick
from .modules import Degraded, ModuleData, SharedFetch
from .routes import RouteMap
from .runtime import ActorGaveUp, ActorRestarted, Heartbeat, LeaderChanged, Lease
from .subjects import (
    ALERTS_BUCKET,
    CACHE_BUCKET,
    CIRCUITS_BUCKET,
    FLAGS_BUCKET,
    LEASES_BUCKET,
    ROUTES_BUCKET,
    ROUTES_KEY,
    BucketName,
    Subjects,
)

#: What each channel parameter means (one description per name).
PARAMETERS = {
    "asset": "Base asset, upper case, e.g. SOL",
    "module": "Module name, e.g. spot_ob",
    "actor": "Actor name, e.g. fetch-whale",
    "flag": "Feature flag, upper case, e.g. ETF",
    "scope": "Breaker scope: 'all' (module-wide) or an asset",
    "alertname": "Alert name: core_down, backend_down or test",
    "key": "An alert's fingerprint (16 hex digits), or `mute`",
    "cachekey": "The upstream key a module is asked for, e.g. BTC for ETF flows",
    "role": "A singleton actor: scheduler, assembler, circuits, discovery or alerter",
}


@dataclass(frozen=True, slots=True)
class Channel:
    """One subject (pattern) and what travels on it."""

    name: str
    address: Callable[[Subjects], str]  # the wildcard form; each '*' is a parameter
    parameters: tuple[str, ...]
    messages: tuple[type[Message], ...]
    sent_by_sniper: bool
    description: str
    reply: type[Message] | None = None
    queue: str | None = None  # the queue group sniper's responders share

    def address_of(self, subjects: Subjects) -> str:
        """The subject with ``{parameter}`` in place of each ``*``."""
        tokens = self.address(subjects).split(".")
        names = iter(self.parameters)
        return ".".join(f"{{{next(names)}}}" if t == "*" else t for t in tokens)


def _kv(bucket: BucketName, *keys: str) -> Callable[[Subjects], str]:
    return lambda s: ".".join(("$KV", s.kv_bucket(bucket), *keys))


CHANNELS: tuple[Channel, ...] = (
    Channel(
        "signal",
        Subjects.signal_all,
        ("asset",),
        (Signal,),
        True,
        "The trading signal of one (asset, cycle): direction, score, confidence and every module's status. "
        "What other bots subscribe to. Also kept in the JetStream stream <prefix>_signals (sniper_signals): a "
        "late joiner reads the newest per asset (DeliverPolicy.LAST_PER_SUBJECT); each is published with "
        "Nats-Msg-Id <asset>.<epoch>.<cycle>, stored once.",
    ),
    Channel(
        "health",
        Subjects.health_all,
        ("asset",),
        (Health,),
        True,
        "The scheduler's verdict on an asset's cycle: ok, soft_fail (an optional module failed) or "
        "hard_fail (every core module failed), with the backoff it applies.",
    ),
    Channel("tick", Subjects.tick_all, ("asset",), (Tick,), True, "A cycle starts: fetchers, fetch now."),
    Channel(
        "data",
        Subjects.data_all,
        ("module", "asset"),
        (ModuleData,),
        True,
        "A module answered for (asset, cycle): its typed payload and latency.",
    ),
    Channel(
        "degraded",
        Subjects.degraded_all,
        ("module", "asset"),
        (Degraded,),
        True,
        "A module did not answer for (asset, cycle): the reason, and whether an upstream call was made.",
    ),
    Channel(
        "circuit",
        Subjects.circuit_all,
        ("module",),
        (CircuitState,),
        True,
        "A breaker changed state (closed, open, half_open, quarantined).",
    ),
    Channel(
        "flagsChanged",
        lambda s: s.flags_changed(),
        (),
        (FlagChanged,),
        True,
        "A feature flag changed: who, when, why.",
    ),
    Channel("routes", lambda s: s.routes(), (), (RouteMap,), True, "Discovery's current route map."),
    Channel(
        "leader",
        Subjects.leader_all,
        ("role",),
        (LeaderChanged,),
        True,
        "A process took over a singleton actor's lease (a new term): leadership moved, or was first taken.",
    ),
    Channel("heartbeat", Subjects.heartbeat_all, ("actor",), (Heartbeat,), True, "Every actor, every few seconds."),
    Channel(
        "actorEvent",
        Subjects.actor_event_all,
        ("actor",),
        (ActorRestarted, ActorGaveUp),
        True,
        "The supervisor restarted an actor, or gave up on it (the process then exits 3).",
    ),
    Channel(
        "cmdFlags",
        lambda s: s.command("flags"),
        (),
        (FlagCommand,),
        False,
        'List (`{}`) or set (`{"flag": "ETF", "enabled": false, "why": "..."}`) feature flags.',
        reply=FlagReply,
        queue="flags",
    ),
    Channel(
        "cmdCircuit",
        lambda s: s.command("circuit"),
        (),
        (CircuitCommand,),
        False,
        'List breakers (`{"action": "list"}`) or reset a module\'s (`{"action": "reset", "module": "etf"}`). '
        "Every circuit supervisor hears it (no queue group); the one holding the lease answers.",
        reply=CircuitReply,
    ),
    Channel(
        "cmdStatus",
        lambda s: s.command("status"),
        (),
        (StatusQuery,),
        False,
        "Read-only: per configured asset its last signal and the breakers that are not closed, and every "
        'feature flag (`{}`, or `{"asset": "SOL"}` for one asset). Bots may ask it too.',
        reply=StatusReply,
        queue="status",
    ),
    Channel(
        "alert",
        Subjects.alert_all,
        ("alertname",),
        (Alert,),
        True,
        "The alerter: an alert started firing or resolved (core_down per asset when every enabled core module "
        "failed for --alert-for; backend_down when the backend is unreachable as a whole).",
    ),
    Channel(
        "cmdAlerts",
        lambda s: s.command("alerts"),
        (),
        (AlertCommand,),
        False,
        'The alerts firing (`{"action": "list"}`); mute notifications (`{"action": "mute", "seconds": 3600}`) '
        "or unmute them. Every alerter answers (no queue group), so a mute reaches all.",
        reply=AlertReply,
    ),
    Channel(
        "kvFlags",
        _kv(FLAGS_BUCKET, "*"),
        ("flag",),
        (FlagChanged,),
        True,
        "The flags bucket: one key per flag (upper case) holding its last FlagChanged; the truth every "
        "process follows.",
    ),
    Channel(
        "kvCircuits",
        _kv(CIRCUITS_BUCKET, "*", "*"),
        ("module", "scope"),
        (CircuitState,),
        True,
        "The circuits bucket: one key per breaker, `<module>.<scope>`, holding its last CircuitState.",
    ),
    Channel(
        "kvAlerts",
        _kv(ALERTS_BUCKET, "*"),
        ("key",),
        (AlertLog, Mute),
        True,
        "The alerts bucket, the alerter's notification log: one AlertLog per alert fingerprint (who was told "
        "what, when), and `mute` holding the current Mute.",
    ),
    Channel(
        "kvLeases",
        _kv(LEASES_BUCKET, "*"),
        ("role",),
        (Lease,),
        True,
        "The leases bucket: one Lease per singleton actor (scheduler, assembler, circuits, discovery, alerter): "
        "which process runs it, its term (the fencing token in what it publishes) and when it last renewed.",
    ),
    Channel(
        "kvCache",
        _kv(CACHE_BUCKET, "*", "*"),
        ("module", "cachekey"),
        (SharedFetch,),
        True,
        "The cache bucket: per (module, key) of a module many assets share (ETF flows by BTC/ETH), the one "
        "upstream call every process's fetchers share: claimed by one, then its answer (fresh for the "
        "module's cache lifetime).",
    ),
    Channel(
        "kvRoutes",
        _kv(ROUTES_BUCKET, ROUTES_KEY),
        (),
        (RouteMap,),
        True,
        f"The routes bucket: key `{ROUTES_KEY}` holds discovery's last RouteMap.",
    ),
)
