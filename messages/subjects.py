"""Every NATS subject sniper uses is built here, and only here.

Subjects are part of the public contract: other bots subscribe to
``sniper.signal.SOL`` and operators publish ``sniper.cmd.flags``. Building them
in one place keeps the names consistent, lets a deployment choose its own
prefix (several pipelines on one NATS account), and rejects values that would
silently change a subject's meaning (an asset called ``SOL.>`` would otherwise
subscribe to far more than intended).

Layout (with the default prefix ``sniper``)::

    sniper.tick.<ASSET>                 Tick          scheduler -> fetchers
    sniper.data.<module>.<ASSET>        ModuleData    fetcher -> assembler
    sniper.degraded.<module>.<ASSET>    Degraded      fetcher -> assembler
    sniper.signal.<ASSET>               Signal        assembler -> bots, alerter
    sniper.health.<ASSET>               Health        scheduler -> operators
    sniper.heartbeat.<actor>            Heartbeat     every actor
    sniper.actor.<actor>                ActorRestarted / ActorGaveUp
    sniper.circuit.<module>             CircuitState
    sniper.flags.changed                FlagChanged
    sniper.cmd.<command>                request/reply commands (flags, circuit, status)
    sniper.routes                       RouteMap from discovery
    sniper.alert.<name>                 Alert (firing / resolved) from the alerter
    sniper.leader.<role>                LeaderChanged: a process took a singleton's lease

The commands are also a NATS micro service (`Subjects.service_name`, ``sniper``):
every process serving one answers the protocol's discovery requests on
``$SRV.<VERB>``, ``$SRV.<VERB>.<service>`` and ``$SRV.<VERB>.<service>.<id>``
(`micro_subjects`; VERB is PING, INFO or STATS).

Key-value buckets (JetStream, named by `Subjects.kv_bucket`: ``sniper_flags``)
are part of the contract too, since other bots read them::

    flags      <FLAG>, e.g. SPOT_OB         FlagChanged
    circuits   <module>.<scope>             CircuitState
    routes     current (ROUTES_KEY)         RouteMap
    alerts     <fingerprint>                AlertLog (the alerter's notification log)
    leases     <role>, e.g. scheduler        Lease (who runs the singleton actor `role`)
    cache      <module>.<key>, e.g. etf.BTC SharedFetch (one upstream call for every process)
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final, Literal

from .errors import SubjectError

DEFAULT_PREFIX = "sniper"

#: Up to this many configured assets, actors subscribe per asset, so the broker
#: itself drops traffic for any other asset before it reaches the process (a
#: flood of forged assets then costs nothing); above it, one wildcard each.
PER_ASSET_MAX = 64

#: The key-value buckets a pipeline owns; nothing else gets a bucket name.
BucketName = Literal["flags", "circuits", "routes", "alerts", "leases", "cache"]
FLAGS_BUCKET: Final[BucketName] = "flags"
CIRCUITS_BUCKET: Final[BucketName] = "circuits"
ROUTES_BUCKET: Final[BucketName] = "routes"
ALERTS_BUCKET: Final[BucketName] = "alerts"
LEASES_BUCKET: Final[BucketName] = "leases"
CACHE_BUCKET: Final[BucketName] = "cache"
#: The one key of the routes bucket: the latest route map.
ROUTES_KEY: Final = "current"
#: Durable streams sniper creates (prefix-scoped like the buckets: `Subjects.stream`).
StreamName = Literal["signals"]
SIGNALS_STREAM: Final[StreamName] = "signals"

_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")
_PREFIX = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


def token(value: str, what: str = "token") -> str:
    """Return `value` if it is safe as one subject token, else raise SubjectError."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise SubjectError(f"{what} {value!r} cannot be a subject token: use letters, digits, '_' or '-'")
    return value


#: The NATS micro protocol (ADR-32, `nats.micro`): discovery requests every service instance answers.
MicroVerb = Literal["PING", "INFO", "STATS"]
MICRO_VERBS: Final[tuple[MicroVerb, ...]] = ("PING", "INFO", "STATS")
#: The protocol's root; not under a pipeline's prefix: every service on the account shares it.
MICRO_ROOT: Final = "$SRV"


def micro_subjects(verb: MicroVerb, service: str, instance: str) -> tuple[str, str, str]:
    """Where one service instance hears `verb`: from anyone, for its service name, for it alone.

    ``$SRV.PING``, ``$SRV.PING.sniper``, ``$SRV.PING.sniper.<id>``.
    """
    if verb not in MICRO_VERBS:
        raise SubjectError(f"micro verb {verb!r} is none of {', '.join(MICRO_VERBS)}")
    everyone = f"{MICRO_ROOT}.{verb}"
    named = f"{everyone}.{token(service, 'service name')}"
    return everyone, named, f"{named}.{token(instance, 'service id')}"


class Subjects:
    """Builds subjects under one prefix; wildcards come from the ``*_all`` methods."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix) or prefix.startswith("$"):
            raise SubjectError(f"subject prefix {prefix!r} must be dot-separated tokens")
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"Subjects({self.prefix!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Subjects) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)

    def _join(self, *tokens: str) -> str:
        return ".".join((self.prefix, *tokens))

    # -- everything -------------------------------------------------------
    def everything(self) -> str:
        """Wildcard for every message of this pipeline (what `sniper record` takes)."""
        return self._join(">")

    # -- the cycle ----------------------------------------------------------
    def tick(self, asset: str) -> str:
        return self._join("tick", token(asset, "asset"))

    def tick_all(self) -> str:
        return self._join("tick", "*")

    def data(self, module: str, asset: str) -> str:
        return self._join("data", token(module, "module"), token(asset, "asset"))

    def degraded(self, module: str, asset: str) -> str:
        return self._join("degraded", token(module, "module"), token(asset, "asset"))

    def data_all(self) -> str:
        return self._join("data", "*", "*")

    def degraded_all(self) -> str:
        return self._join("degraded", "*", "*")

    def signal(self, asset: str) -> str:
        return self._join("signal", token(asset, "asset"))

    def signal_all(self) -> str:
        return self._join("signal", "*")

    # -- narrowed to configured assets (see PER_ASSET_MAX) -------------------
    def _per_asset(self, kind: tuple[str, ...], assets: Collection[str] | None) -> list[str]:
        if assets is None or len(assets) > PER_ASSET_MAX:
            return [self._join(*kind, "*")]
        return [self._join(*kind, token(a, "asset")) for a in sorted(assets)]

    def ticks_for(self, assets: Collection[str] | None) -> list[str]:
        """Tick subjects of these assets (every tick when None or many)."""
        return self._per_asset(("tick",), assets)

    def _reports(self, kind: str, assets: Collection[str] | None, modules: Collection[str] | None) -> list[str]:
        if assets is not None and modules is not None and len(assets) * len(modules) <= PER_ASSET_MAX:
            # Few enough to name each (module, asset): the broker drops made-up modules too.
            return [
                self._join(kind, token(m, "module"), token(a, "asset")) for m in sorted(modules) for a in sorted(assets)
            ]
        return self._per_asset((kind, "*"), assets)

    def data_for(self, assets: Collection[str] | None, modules: Collection[str] | None = None) -> list[str]:
        """ModuleData subjects for these assets (and modules, when both are few)."""
        return self._reports("data", assets, modules)

    def degraded_for(self, assets: Collection[str] | None, modules: Collection[str] | None = None) -> list[str]:
        """Degraded subjects for these assets (and modules, when both are few)."""
        return self._reports("degraded", assets, modules)

    def signals_for(self, assets: Collection[str] | None) -> list[str]:
        """Signal subjects of these assets."""
        return self._per_asset(("signal",), assets)

    def health(self, asset: str) -> str:
        return self._join("health", token(asset, "asset"))

    def health_all(self) -> str:
        return self._join("health", "*")

    def health_for(self, assets: Collection[str] | None) -> list[str]:
        """Health subjects of these assets."""
        return self._per_asset(("health",), assets)

    # -- runtime ------------------------------------------------------------
    def heartbeat(self, actor: str) -> str:
        return self._join("heartbeat", token(actor, "actor"))

    def heartbeat_all(self) -> str:
        return self._join("heartbeat", "*")

    def actor_event(self, actor: str) -> str:
        return self._join("actor", token(actor, "actor"))

    def actor_event_all(self) -> str:
        return self._join("actor", "*")

    # -- control plane (resilience, discovery) ------------------------------
    def circuit(self, module: str) -> str:
        return self._join("circuit", token(module, "module"))

    def circuit_all(self) -> str:
        return self._join("circuit", "*")

    def flags_changed(self) -> str:
        return self._join("flags", "changed")

    def command(self, name: str) -> str:
        return self._join("cmd", token(name, "command"))

    def service_name(self) -> str:
        """This pipeline's NATS micro service name (``sniper``; prefix-scoped like the buckets)."""
        return self.prefix.replace(".", "_")

    def routes(self) -> str:
        return self._join("routes")

    def alert(self, name: str) -> str:
        return self._join("alert", token(name, "alert"))

    def alert_all(self) -> str:
        return self._join("alert", "*")

    def leader(self, role: str) -> str:
        return self._join("leader", token(role, "role"))

    def leader_all(self) -> str:
        return self._join("leader", "*")

    def kv_bucket(self, name: BucketName) -> str:
        """Name of a JetStream key-value bucket owned by this pipeline (prefix-scoped).

        `name` is one of `BucketName` (`Actor.bucket` takes only those).
        """
        return f"{self.prefix.replace('.', '_')}_{token(name, 'bucket')}"

    def stream(self, name: StreamName) -> str:
        """Name of a JetStream stream owned by this pipeline (prefix-scoped, like the buckets)."""
        return f"{self.prefix.replace('.', '_')}_{token(name, 'stream')}"
