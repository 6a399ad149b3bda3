"""An actor runtime on asyncio and NATS; it knows nothing of sniper's modules or metrics.

The public surface is small; everything else lives in private-by-convention
modules of this package::

    Actor, Sub, Context, ActorState      runtime.actor
    Supervisor, RestartPolicy            runtime.supervisor
    Clock, SystemClock, VirtualClock     runtime.clock
    Bus, Envelope, MemoryBus, NatsBus    runtime.bus, runtime.memory_bus, runtime.nats_bus
    RuntimeHooks                         runtime.hooks (what the runtime counts, for a process's metrics)
    ActorSystemError and its tree        runtime.errors

Test helpers (message recorders, `wait_until`) and the conformance checks a
bus or key-value implementation must pass (`check_bus`, `check_key_value`)
are in `runtime.testing`, shipped with the package like trio's ``testing``.
"""

from .actor import Actor, ActorState, Context, InvalidTransition, Sub
from .bus import Bus, BusStats, Envelope, Subscription, subject_matches
from .clock import Clock, SystemClock, VirtualClock
from .memory_bus import MemoryBus
from .nats_bus import NatsBus
from .supervisor import RestartPolicy, Supervisor

__all__ = [
    "Actor",
    "ActorState",
    "Bus",
    "BusStats",
    "Clock",
    "Context",
    "Envelope",
    "InvalidTransition",
    "MemoryBus",
    "NatsBus",
    "RestartPolicy",
    "Sub",
    "Subscription",
    "Supervisor",
    "SystemClock",
    "VirtualClock",
    "subject_matches",
]
