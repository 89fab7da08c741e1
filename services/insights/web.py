"""The insights dashboard: a read-only web page over the insights API, on loopback.

`make_dashboard_app(insights_address)` puts it together: the page, its assets and
JSON endpoints that ask the insights service over gRPC (web_handlers, shaped by
web_json), so every figure on the page is exactly what the API answers, and the
page reads nothing but the read models; and `/api/events`, the change feed that
tells a page when to reload (web_feed).

Run on its own with `python -m services.insights.web` (it asks the
insights service at CLOSEDLOOP_INSIGHTS_ADDRESS), or call `start_dashboard` from a
process that already runs the insights service.

| variable | default |
|---|---|
| CLOSEDLOOP_INSIGHTS_HTTP_HOST | 127.0.0.1 (no login: keep it on loopback) |
| CLOSEDLOOP_INSIGHTS_HTTP_PORT | 8055 (0: a free port) |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from aiohttp import web

from closedloop.config import ServiceConfig
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.process import Running, run_forever
from services.insights.settings import DashboardEnv
from services.insights.web_feed import ChangeFeed, poll, stream_handler
from services.insights.web_handlers import STUB, host_guard, routes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

log = logging.getLogger("services.insights.web")

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8055
HOST_VARIABLE = "CLOSEDLOOP_INSIGHTS_HTTP_HOST"
PORT_VARIABLE = "CLOSEDLOOP_INSIGHTS_HTTP_PORT"

#: Hosts a browser may name when the dashboard is bound to loopback. Anything else
#: is refused, so a page on another site cannot read it through DNS rebinding.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind

# -- the application -------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    #: None: any Host header (bound to every interface).
    allowed_hosts: frozenset[str] | None
    keepalive_seconds: float


def _allowed_hosts(bind_host: str) -> frozenset[str] | None:
    if bind_host in WILDCARD_HOSTS:
        return None
    return LOOPBACK_NAMES | {bind_host.strip("[]")}


def make_dashboard_app(
    insights_address: str,
    *,
    bind_host: str = DEFAULT_HTTP_HOST,
    poll_seconds: float = 1.0,
    keepalive_seconds: float = 15.0,
) -> web.Application:
    """The dashboard, asking the insights service at `insights_address` (gRPC)."""
    settings = Settings(_allowed_hosts(bind_host), keepalive_seconds)
    feed = ChangeFeed()
    app = web.Application(middlewares=[host_guard(settings.allowed_hosts)])

    async def insights_channel(app: web.Application) -> AsyncIterator[None]:
        channel = grpc.aio.insecure_channel(insights_address)
        stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
        app[STUB] = stub
        poller = asyncio.create_task(
            poll(stub, feed, poll_seconds), name="dashboard-poller"
        )
        yield
        feed.close()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        await channel.close()

    async def release_listeners(_app: web.Application) -> None:
        feed.close()

    app.cleanup_ctx.append(insights_channel)
    app.on_shutdown.append(release_listeners)
    app.add_routes(routes())
    app.router.add_get("/api/events", stream_handler(feed, settings.keepalive_seconds))
    return app


# -- running it ------------------------------------------------------------------------


def http_settings(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """(host, port) from CLOSEDLOOP_INSIGHTS_HTTP_HOST and _PORT, with defaults."""
    env = DashboardEnv.from_env(environ)
    port = DEFAULT_HTTP_PORT if env.http_port is None else env.http_port
    return env.http_host or DEFAULT_HTTP_HOST, port


def dial_address(host: str, port: int) -> str:
    """Where a client on this machine reaches a server bound to `host`:`port`."""
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def dashboard_url(environ: Mapping[str, str] | None = None) -> str:
    """Where the dashboard answers with the configured (non-zero) port."""
    return f"http://{dial_address(*http_settings(environ))}/"


@dataclass
class Dashboard:
    """A running dashboard; `stop()` closes open event streams and the port."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{dial_address(self.host, self.port)}/"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_dashboard(
    host: str | None = None,
    port: int | None = None,
    *,
    insights_address: str,
    environ: Mapping[str, str] | None = None,
    poll_seconds: float = 1.0,
) -> Dashboard:
    """Serves the dashboard; host and port default to the environment's settings."""
    env_host, env_port = http_settings(environ)
    host = env_host if host is None else host
    port = env_port if port is None else port
    app = make_dashboard_app(
        insights_address, bind_host=host, poll_seconds=poll_seconds
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple):
            bound = int(address[1])
            break
    return Dashboard(runner=runner, host=host, port=bound)


def main() -> None:
    config = ServiceConfig.from_env("insights")

    async def start() -> Running:
        dashboard = await start_dashboard(
            insights_address=config.peer_address("insights")
        )
        return Running(
            name="the dashboard",
            banner=f"closedloop dashboard on {dashboard.url}",
            on_stop=dashboard.stop,
        )

    run_forever(start, collect_less=False)


if __name__ == "__main__":
    main()
