"""Fixtures of the multi-host tests: a `NetBed`, or a clear skip where network namespaces cannot be made.

Why a probe rather than a root check: what a bed needs is ``ip netns add``
and ``ip netns exec`` to work (iproute2 installed, CAP_SYS_ADMIN, a /run/netns
that can be mounted), and only trying tells. It runs once per session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .netbed import NetBed, namespaces_unavailable


@pytest.fixture(scope="session")
def netns_problem() -> str | None:
    """Why this machine cannot build a test bed, or None when it can."""
    return namespaces_unavailable()


@pytest.fixture
def netns(netns_problem: str | None) -> None:
    """Skips the test, naming the reason, where network namespaces cannot be made."""
    if netns_problem:
        pytest.skip(f"network namespaces unavailable: {netns_problem}")


@pytest.fixture
async def netbed(netns: None) -> AsyncIterator[NetBed]:
    """Three hosts in network namespaces on one bridge, nothing running yet; all of it removed afterwards."""
    async with NetBed(3) as bed:
        yield bed


@pytest.fixture
async def nats_cluster(netbed: NetBed) -> NetBed:
    """The `netbed` with one NATS node per host, routed into one cluster with JetStream ready."""
    await netbed.start_nats_cluster()
    return netbed
