"""sniper: a resilient, distributed crypto-signal pipeline (CLI and process wiring).

The wire contract lives in `messages`, the actor runtime and actors in
`actors`, the reference backend in `marketsim`; this package starts them.
"""

__version__ = "0.1.0"
