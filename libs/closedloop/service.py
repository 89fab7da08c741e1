"""The composition root of every write-side service: store, commits, relay, gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from closedloop import bus, retry
from closedloop.bus.consumer import ConsumerSpec, EventConsumer
from closedloop.bus.streams import StreamSettings, context_stream, provision_streams
from closedloop.config import redacted_url
from closedloop.eventstore.store import StoreLocation
from closedloop.eventstore.unit_of_work import CommandExecutor
from closedloop.grpckit.server import Registration, RunningServer, start_server
from closedloop.relay import Relay, RelaySettings
from closedloop.relay.outbox import OutboxRecipe
from closedloop.relay.positions import RelayPositions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from eventsourcing.application import Application
    from google.protobuf.message import Message
    from nats.aio.client import Client

    from closedloop.config import ServiceConfig

log = logging.getLogger(__name__)

#: How often a service asks again for a NATS that is not there yet.
NATS_AWAY = retry.Backoff.constant(1.0)


@dataclass
class Service:
    """A running service: what tests and the process entry point both hold."""

    config: ServiceConfig
    store: Application[Any]
    executor: CommandExecutor
    server: RunningServer
    relay: Relay | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    #: Closes what the service's adapters opened (clients of other services).
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    nc: Client | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.config.service

    @property
    def banner(self) -> str:
        return (
            f"closedloop {self.config.service} listening on "
            f"{self.config.grpc_host}:{self.server.port}"
        )

    async def stop(self, grace: float = 5.0) -> None:
        """Stops taking calls, finishes those in flight, lets the relay catch up."""
        await self.server.stop(grace)
        await self.executor.close()
        for close in self.on_stop:
            await close()
        if self.relay is not None and self.nc is not None and self.nc.is_connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain_relay(), timeout=grace)
        await cancel_all(self.tasks, grace)
        if self.relay is not None:
            await self.relay.close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.store.close()

    async def _drain_relay(self) -> None:
        assert self.relay is not None  # noqa: S101
        while self.relay.ready.is_set():
            top = await asyncio.to_thread(self.store.recorder.max_notification_id)
            if not top or self.relay.position >= top:
                await self.relay.save_position()
                return
            await asyncio.sleep(0.05)


async def cancel_all(tasks: Sequence[asyncio.Task[Any]], grace: float) -> list[str]:
    """Cancels the tasks and waits for them, at most `grace`: a stop never hangs.

    Returns (and logs) the names of the tasks that were still running by then.
    """
    for task in tasks:
        task.cancel()
    if not tasks:
        return []
    done, running = await asyncio.wait(tasks, timeout=grace)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it at exit
    stuck = sorted(task.get_name() for task in running)
    if stuck:
        log.warning("tasks still running %.1f s after cancellation: %s", grace, stuck)
    return stuck


async def start_service(
    config: ServiceConfig,
    *,
    store_class: type[Application[Any]],
    registrations: Callable[
        [Application[Any], CommandExecutor], Sequence[Registration]
    ],
    to_message: Callable[[Any], Message | None],
    source: str,
    relay_settings: RelaySettings | None = None,
    consumers: Callable[[], Sequence[ConsumerSpec]] = tuple,
    on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Service:
    location = StoreLocation.parse(config.store_url)
    await asyncio.to_thread(location.ensure_schema)
    store_env = location.eventsourcing_env()
    store = store_class(env=store_env)
    relay_box: list[Relay] = []

    def wake_relay(committed: int) -> None:
        if relay_box:
            relay_box[0].wake(committed)

    executor = CommandExecutor(store, on_saved=wake_relay)
    server = await start_server(config.grpc_address, registrations(store, executor))
    service = Service(
        config=config,
        store=store,
        executor=executor,
        server=server,
        on_stop=list(on_stop),
    )
    if location.kind != "memory":
        positions = RelayPositions(location.sqlalchemy_url(), schema=location.pg_schema)
        service.tasks.append(
            asyncio.create_task(
                _connect_and_relay(
                    service,
                    positions,
                    relay_box,
                    OutboxRecipe(store_class, store_env, to_message, source),
                    relay_settings,
                    consumers(),
                ),
                name="relay",
            )
        )
    return service


async def _connect_and_relay(
    service: Service,
    positions: RelayPositions,
    relay_box: list[Relay],
    outbox: OutboxRecipe,
    relay_settings: RelaySettings | None,
    consumer_specs: Sequence[ConsumerSpec],
) -> None:
    """Runs beside the gRPC server: commands succeed while NATS is still away."""
    config = service.config
    nc = await retry.call_async(
        lambda: bus.connect(config.nats_url, name=f"closedloop-{config.service}"),
        on=Exception,  # whatever it is, keep trying until NATS is there
        backoff=NATS_AWAY,
        before_retry=lambda error: log.warning(
            "cannot reach NATS at %s yet: %s", redacted_url(config.nats_url), error
        ),
    )
    service.nc = nc
    settings = StreamSettings(
        replicas=config.stream_replicas,
        duplicate_window_seconds=config.duplicate_window_seconds,
    )
    await retry.call_async(
        lambda: provision_streams(
            nc.jetstream(), settings, (config.service,), include_log=False
        ),
        on=Exception,  # NATS may be away; keep trying
        backoff=NATS_AWAY,
        before_retry=lambda error: log.warning(
            "cannot provision streams yet: %s", error
        ),
    )
    relay = Relay(
        name=f"{config.service}-relay",
        # Decoding and mapping stored events happens in a worker process, off the
        # GIL that the service's commands need, unless configured otherwise.
        outbox=outbox.outbox(config.relay_outbox, service.store),
        nc=nc,
        stream=context_stream(config.service),
        positions=positions,
        settings=relay_settings,
    )
    relay_box.append(relay)
    service.relay = relay
    for spec in consumer_specs:
        consumer = EventConsumer(nc, spec)
        service.consumers.append(consumer)
        service.tasks.append(
            asyncio.create_task(consumer.run(), name=spec.subscription.durable)
        )
    await relay.run()
