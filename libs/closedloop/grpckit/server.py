"""grpc.aio server bootstrap: health, reflection, error mapping, graceful stop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from closedloop.grpckit.errors import guard_servicer

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """One servicer: the generated `add_*_to_server`, the instance, its full name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    service_name: str


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: HealthServicer
    port: int
    service_names: tuple[str, ...]

    async def stop(self, grace: float = 5.0) -> None:
        """Reports NOT_SERVING, lets calls in flight finish, then stops."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    address: str,
    registrations: Sequence[Registration],
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> RunningServer:
    server = grpc.aio.server(
        interceptors=list(interceptors) or None,
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ],
    )
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [r.service_name for r in registrations]
    for registration in registrations:
        guard_servicer(registration.servicer, registration.service_name)
        registration.add_to_server(registration.servicer, server)
    reflection.enable_server_reflection(
        (
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in names:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC listening on %s (%s)", address.rsplit(":", 1)[0] + f":{port}", names)
    return RunningServer(
        server=server, health=health, port=port, service_names=tuple(names)
    )
