"""Runs the insights service: `python -m services.insights`.

It serves closedloop.insights.v1.InsightsService on CLOSEDLOOP_INSIGHTS_GRPC_PORT
(50055) from the read store at CLOSEDLOOP_PROJECTOR_STORE_URL, and asks NATS only
for the log's length (the lag in ListProjections).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from closedloop import bus, retry
from closedloop.config import ServiceConfig
from closedloop.grpckit.server import Registration, RunningServer, start_server
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.process import Running, run_forever
from closedloop.projections import ReadStore, discover
from closedloop.projections.reader import log_last_seq
from closedloop.readmodels import store_url
from services.insights.api import SERVICE_NAME, InsightsServicer
from services.insights.readmodels import ReadModels
from services.insights.web import dial_address, start_dashboard

if TYPE_CHECKING:
    from collections.abc import Mapping

    from nats.aio.client import Client

log = logging.getLogger("services.insights")


@dataclass
class Insights:
    config: ServiceConfig
    server: RunningServer
    store: ReadStore
    nc: list[Client] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for nc in self.nc:
            with contextlib.suppress(Exception):
                await nc.close()
        self.store.close()


async def bootstrap(
    config: ServiceConfig, *, environ: Mapping[str, str] | None = None
) -> Insights:
    """Opens the read store, starts the gRPC server, connects to NATS meanwhile."""
    store = await asyncio.to_thread(ReadStore, store_url(environ))
    registry = discover(environ)
    connections: list[Client] = []

    async def log_head() -> int:
        if not connections:
            raise ConnectionError("not connected to NATS yet")
        return await log_last_seq(connections[0])

    servicer = InsightsServicer(
        ReadModels(store),
        secret_key=config.secret_key,
        installed=dict(registry.projections),
        log_head=log_head,
    )
    server = await start_server(
        config.grpc_address,
        [
            Registration(
                insights_service_pb2_grpc.add_InsightsServiceServicer_to_server,
                servicer,
                SERVICE_NAME,
            )
        ],
    )
    insights = Insights(config=config, server=server, store=store, nc=connections)

    async def connect() -> None:
        nc = await retry.call_async(
            lambda: bus.connect(config.nats_url, name="closedloop-insights"),
            on=Exception,  # whatever it is, NATS may come later
            backoff=retry.Backoff.constant(2.0),
            before_retry=lambda error: log.info(
                "NATS not reachable yet (%s); lag is unknown meanwhile", error
            ),
        )
        connections.append(nc)

    insights.tasks.append(asyncio.create_task(connect(), name="nats"))
    return insights


async def start(config: ServiceConfig) -> Running:
    insights = await bootstrap(config)
    # The dashboard reads through the same API, so it shows what the API answers.
    dashboard = await start_dashboard(
        insights_address=dial_address(config.grpc_host, insights.server.port)
    )

    async def stop() -> None:
        await dashboard.stop()
        await insights.stop()

    return Running(
        name="insights",
        banner=(
            f"closedloop insights listening on {config.grpc_host}:"
            f"{insights.server.port}\n"
            f"closedloop dashboard on {dashboard.url}"
        ),
        on_stop=stop,
    )


def main() -> None:
    config = ServiceConfig.from_env("insights")
    run_forever(lambda: start(config), collect_less=False)


if __name__ == "__main__":
    main()
