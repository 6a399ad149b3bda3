"""sniper's actor runtime, and the actors built on it.

The public surface is small; everything else lives in private-by-convention
modules of this package::

    Actor, Sub, Context, ActorState      actors.actor
    Supervisor, RestartPolicy            actors.supervisor
    Clock, SystemClock, VirtualClock     actors.clock
    Bus, Envelope, MemoryBus, NatsBus    actors.bus, actors.memory_bus, actors.nats_bus

Test helpers (a virtual-clock harness, message recorders) are in
`actors.testing`, shipped with the package like trio's ``testing`` module.
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
