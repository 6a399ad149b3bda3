"""The gateway application: configuration, start-up (allow-list from the backend's OpenAPI), serving.

``create_app(config)`` builds the aiohttp application. At start it asks the
backend once for its OpenAPI document (``/openapi.json``, then
``/swagger.json``) and allows exactly the paths (and methods) listed there,
unless `GatewayConfig.allow` names the paths itself. A backend without a
document, or one that cannot be reached, stops the start with a
`GatewayStartError` (a `ConfigError`: ``sniper gateway`` exits 2 with one
line) unless an explicit allow-list is given; then the document is optional.

Routes added by the `extra` callables come first, the proxy catch-all
``<prefix>/{tail:.*}`` last, so sniper's own endpoints (``<prefix>/sniper/...``,
``<prefix>/openapi.json``, ``/``) win. ``<prefix>/sniper/...`` is never
forwarded. ``app[GATEWAY_STATE]`` holds what those endpoints need: the
config, the allow-list, the backend's raw document and the client session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from messages import ConfigError
from runtime.logs import get_logger

from ..app import wait_for_stop
from ..config import NatsAuth
from .paths import AllowList, check_prefix, check_template, templates_from_openapi
from .proxy import SKIP_AUTO_HEADERS, IPNetwork, Proxy, parse_networks

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_READ_TIMEOUT",
    "GATEWAY_STATE",
    "SPEC_PATHS",
    "Extra",
    "GatewayConfig",
    "GatewayStartError",
    "GatewayState",
    "create_app",
    "parse_networks",
    "serve",
]

log = get_logger("gateway")

DEFAULT_PREFIX = "/gpts"
DEFAULT_PORT = 8080
#: Largest request body forwarded (1 MiB): GPT actions send small JSON.
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
#: Where the backend's API document is looked for, in this order.
SPEC_PATHS = ("/openapi.json", "/swagger.json")
#: The largest API document read at start.
_MAX_SPEC_BYTES = 16 << 20


class GatewayStartError(ConfigError):
    """The gateway cannot start: no allow-list (backend unreachable or without an OpenAPI document)."""


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``sniper gateway`` needs; `ConfigError` at construction for a value that cannot work."""

    backend: str  #: backend base URL, e.g. http://127.0.0.1:8000 (a path in it is put before every forwarded path)
    prefix: str = DEFAULT_PREFIX  #: the public path prefix, stripped before forwarding
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  #: 0: any free port
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT  #: seconds to open a backend connection
    read_timeout: float = DEFAULT_READ_TIMEOUT  #: seconds the backend may stay silent while answering
    #: Peers whose X-Forwarded-For/-Proto/-Host (and Forwarded, X-Real-IP) are believed.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    #: Path templates forwarded (any method); None: exactly the paths of the backend's OpenAPI document.
    allow: tuple[str, ...] | None = None
    nats: str | None = None  #: NATS URL for sniper's own endpoints (live state); the proxy does not use it
    nats_auth: NatsAuth = field(default_factory=NatsAuth)

    def __post_init__(self) -> None:
        try:
            url = URL(self.backend)
        except ValueError:
            url = URL()
        if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
            raise ConfigError(f"gateway backend {self.backend!r} is not an http(s) URL like http://127.0.0.1:8000")
        if problem := check_prefix(self.prefix):
            raise ConfigError(f"gateway prefix: {problem}")
        if not 0 <= self.port <= 65_535:
            raise ConfigError(f"gateway port must be between 0 and 65535, got {self.port}")
        if self.max_body_bytes < 0:
            raise ConfigError(f"gateway max body must be at least 0 bytes, got {self.max_body_bytes}")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not 0 < value < float("inf"):
                raise ConfigError(f"gateway {name.replace('_', ' ')} must be a positive number of seconds")
        for template in self.allow or ():
            if problem := check_template(template):
                raise ConfigError(f"gateway allow-list: {problem}")
        if self.allow is not None and not self.allow:
            raise ConfigError("gateway allow-list is empty: name at least one path, or leave it out")

    @property
    def backend_path(self) -> str:
        """The path of the backend URL without its trailing slash ("" for http://host:8000)."""
        return URL(self.backend).raw_path.rstrip("/")


@dataclass(frozen=True)
class GatewayState:
    """``app[GATEWAY_STATE]``: what sniper's own gateway endpoints read."""

    config: GatewayConfig
    allow: AllowList  #: the matcher the proxy uses
    #: The backend's raw API document as fetched at start (None if an explicit allow-list made it optional).
    backend_spec: dict[str, Any] | None
    spec_url: str | None  #: where `backend_spec` came from
    session: aiohttp.ClientSession  #: the one pooled client session (closed with the app if created by it)

    @property
    def allowed(self) -> tuple[str, ...]:
        """The allowed path templates, e.g. ("/whales/alerts", "/institutional/bias")."""
        return self.allow.templates


GATEWAY_STATE: web.AppKey[GatewayState] = web.AppKey("gateway_state", GatewayState)

#: A callable that adds routes (and startup/cleanup hooks) before the proxy catch-all is registered.
Extra = Callable[[web.Application, GatewayConfig], None]


def new_session(config: GatewayConfig) -> aiohttp.ClientSession:
    """The pooled client session a proxy needs: no cookie jar, no decompression, no environment proxies."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=SKIP_AUTO_HEADERS,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout),
    )


async def fetch_spec(session: aiohttp.ClientSession, config: GatewayConfig) -> tuple[dict[str, Any], str] | str:
    """(document, URL) of the backend's OpenAPI document, or why none was found."""
    base = config.backend.rstrip("/")
    problems = []
    timeout = aiohttp.ClientTimeout(total=config.connect_timeout + config.read_timeout)
    for path in SPEC_PATHS:
        url = f"{base}{path}"
        try:
            async with session.get(url, timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    problems.append(f"{path}: HTTP {response.status}")
                    continue
                if response.headers.get("Content-Encoding", "identity") != "identity":
                    problems.append(f"{path}: compressed ({response.headers['Content-Encoding']})")
                    continue
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > _MAX_SPEC_BYTES:
                        break
                if len(body) > _MAX_SPEC_BYTES:
                    problems.append(f"{path}: larger than {_MAX_SPEC_BYTES} bytes")
                    continue
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"the backend at {config.backend} cannot be reached ({type(exc).__name__}: {exc})"
        try:
            document = json.loads(body)
            templates_from_openapi(document)
        except (ValueError, RecursionError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        return document, url
    return f"the backend at {config.backend} serves no OpenAPI document ({'; '.join(problems)})"


async def create_app(
    config: GatewayConfig,
    *,
    extra: Sequence[Extra] = (),
    session: aiohttp.ClientSession | None = None,
) -> web.Application:
    """The gateway application; fetches the backend's API document once (see the module docstring).

    A given `session` must use an `aiohttp.DummyCookieJar` (a proxy keeps no
    cookies between clients) and is not closed with the app; without one, a
    pooled session is made and closed on the app's cleanup.
    """
    if session is not None and not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
        raise ValueError("the gateway's session must use aiohttp.DummyCookieJar(): a proxy keeps no cookies")
    own = session is None
    client = new_session(config) if session is None else session
    try:
        return await _build(config, client, own, extra)
    except BaseException:
        if own:
            await client.close()
        raise


async def _build(
    config: GatewayConfig, client: aiohttp.ClientSession, own: bool, extra: Sequence[Extra]
) -> web.Application:
    found = await fetch_spec(client, config)
    if isinstance(found, str):
        if config.allow is None:
            raise GatewayStartError(
                f"{found}; the gateway forwards only the paths of the backend's OpenAPI document: "
                "start the backend first, or name the paths with --allow /path,/other/{param}"
            )
        log.warning("gateway_no_backend_spec", reason=found)
        document, spec_url = None, None
    else:
        document, spec_url = found
    if config.allow is not None:
        allow = AllowList((template, None) for template in config.allow)
    else:
        assert document is not None
        allow = AllowList(templates_from_openapi(document, config.backend_path))
        if not len(allow):
            raise GatewayStartError(f"the backend's API document ({spec_url}) lists no path to forward")
    app = web.Application()  # no middleware: every request pays for one, and the proxy answers JSON itself
    app[GATEWAY_STATE] = GatewayState(config, allow, document, spec_url, client)
    if own:

        async def close_session(_: web.Application) -> None:
            await client.close()

        app.on_cleanup.append(close_session)
    for add in extra:
        add(app, config)
    proxy = Proxy(
        backend=config.backend,
        prefix=config.prefix,
        allow=allow,
        session=client,
        max_body_bytes=config.max_body_bytes,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        trusted_proxies=config.trusted_proxies,
    )
    # [\s\S], not ".": the router matches the decoded path, and a %0a in it must reach the handler's checks too.
    catch_all = f"{config.prefix}/{{tail:[\\s\\S]*}}"
    app.router.add_route("*", catch_all, proxy.handle, expect_handler=proxy.expect_handler)
    log.info("gateway_allow_list", paths=len(allow), source=spec_url if config.allow is None else "--allow")
    return app


def _shown(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


async def serve(
    config: GatewayConfig,
    *,
    extra: Sequence[Extra] = (),
    duration: float | None = None,
    ready: Callable[[str], None] | None = None,
) -> int:
    """Run the gateway until SIGINT/SIGTERM (or `duration` seconds); log and pass `ready` its URL. Returns 0."""
    app = await create_app(config, extra=extra)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1]
        url = _shown(config.host, port)
        log.info(
            "gateway_serving", url=f"{url}{config.prefix}/", backend=config.backend, paths=len(app[GATEWAY_STATE].allow)
        )
        if ready is not None:
            ready(url)
        await wait_for_stop(duration)
    finally:
        await runner.cleanup()
        log.info("gateway_stopped")
    return 0
