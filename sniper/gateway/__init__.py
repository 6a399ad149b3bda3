"""The ``/gpts`` gateway: a strict reverse proxy in front of the market-data backend.

``GET /gpts/institutional/bias?symbol=SOL`` reaches the backend as
``GET /institutional/bias?symbol=SOL`` (the seed's section 4, done safely):
the prefix is stripped at a segment boundary, the rest is forwarded byte for
byte, and only the paths of the backend's OpenAPI document are reachable.
``sniper gateway --backend URL`` runs it; see the README, "The /gpts gateway".

    create_app(config, *, extra=(), session=None) -> aiohttp.web.Application
    GatewayConfig(backend, prefix="/gpts", host, port, max_body_bytes, connect_timeout,
                  read_timeout, trusted_proxies, allow, nats, nats_auth)
    app[GATEWAY_STATE] -> GatewayState(config, allow, backend_spec, spec_url, session); .allowed
    serve(config, *, extra=(), duration=None, ready=None)   # until SIGINT/SIGTERM

Modules: `paths` (target parsing, segment checks, allow-list), `proxy` (the
handler), `app` (configuration, start-up, serving).
"""

from .app import (
    GATEWAY_STATE,
    Extra,
    GatewayConfig,
    GatewayStartError,
    GatewayState,
    create_app,
    parse_networks,
    serve,
)
from .paths import AllowList, Refused, Target, parse_target

__all__ = [
    "GATEWAY_STATE",
    "AllowList",
    "Extra",
    "GatewayConfig",
    "GatewayStartError",
    "GatewayState",
    "Refused",
    "Target",
    "create_app",
    "parse_networks",
    "parse_target",
    "serve",
]
