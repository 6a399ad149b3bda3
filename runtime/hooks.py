"""What the runtime reports about itself, through one small seam.

The runtime counts what only it sees: undecodable messages it refused,
messages it shed under flow control, publishes that failed, actors it
restarted. It knows no metrics library; a process that wants those numbers
(Prometheus, StatsD, a test) passes its own `RuntimeHooks` in `Context.hooks`.
The default does nothing. Hooks are called on the hot path of a flood, so an
implementation must be cheap and must not raise.

Timing handlers costs two clock reads per message, so the runtime reads the
clock around a handler only for hooks that ask for it (`times_handlers`): a
process without metrics pays one attribute check.
"""

from __future__ import annotations


class RuntimeHooks:
    """Override the events you want; each default does nothing."""

    #: Whether `handler_finished` wants to be called: set it True where you override it.
    times_handlers: bool = False
    #: Of an actor's handler calls, one in this many is timed (1: every call).
    handler_sample: int = 1

    def actor_started(self, actor: str) -> None:
        """`actor` is starting (called before any of the events below; a place to create series at zero)."""

    def message_refused(self, actor: str) -> None:
        """A message for `actor` did not decode or was refused by its `accept` check, and was dropped."""

    def message_shed(self, actor: str) -> None:
        """A message for `actor` was dropped unread by flow control (rate budget or early-delivery bound)."""

    def publish_failed(self, actor: str, reason: str) -> None:
        """A publish by `actor` failed (`reason`: ``too_large``, ``buffer_full``, ``closed`` or an error type)."""

    def actor_restarted(self, actor: str) -> None:
        """The supervisor restarted `actor` after a crash."""

    def handler_finished(self, actor: str, seconds: float) -> None:
        """A handler of `actor` returned after `seconds` (its clock's monotonic time; called only if `times_handlers`).

        A handler that raised is not timed: the actor crashed, and the restart is counted instead.
        """

    def leader_changed(self, role: str, leading: bool, term: int) -> None:
        """This process took (`leading`) or lost the lease of singleton `role`; `term` is the lease's term."""
