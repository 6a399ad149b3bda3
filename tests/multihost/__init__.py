"""Multi-host tests: several hosts on one machine, built from Linux network namespaces (issue 15, point 4).

sniper's actors may run on separate hosts over a NATS cluster, and what matters
there (a host dying, a link cut and healed, a NATS node killed) cannot be shown
on one loopback interface. `netbed.NetBed` builds real hosts with their own
network stack, one NATS node each, and runs real `sniper run` processes in them;
`conftest.py` offers it as the `netbed` fixture, skipped where namespaces
cannot be created (not root, no iproute2).
"""
