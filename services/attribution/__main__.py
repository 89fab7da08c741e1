"""Runs the attribution service: `python -m services.attribution`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.attribution.v1 import attribution_service_pb2_grpc
from closedloop.config import ServiceConfig
from closedloop.grpckit.server import Registration
from closedloop.process import run_forever
from closedloop.service import Service, start_service
from services.attribution.api import SERVICE_NAME, AttributionServicer
from services.attribution.application import Attributions
from services.attribution.lead_journeys import (
    GrpcLeadJourneys,
    LeadJourneys,
)
from services.attribution.schedule import TrainingSchedule
from services.attribution.settings import AttributionSettings
from services.attribution.store import AttributionStore
from services.attribution.subscriptions import attribution_subscriptions
from services.attribution.wire import SOURCE, to_message

if TYPE_CHECKING:
    from eventsourcing.application import Application

    from closedloop.eventstore.unit_of_work import CommandExecutor
    from closedloop.relay import RelaySettings


async def bootstrap(
    config: ServiceConfig,
    *,
    lead_journeys: LeadJourneys | None = None,
    relay_settings: RelaySettings | None = None,
    train_interval: float | None = None,
    settings: AttributionSettings | None = None,
) -> Service:
    """Starts the service; without `lead_journeys` it asks the lead service.

    `train_interval` (seconds; 0 for none) overrides the settings' schedule, which
    come from CLOSEDLOOP_ATTRIBUTION_* variables unless `settings` is given.
    """
    settings = settings or AttributionSettings.from_env()
    interval = settings.train_interval if train_interval is None else train_interval
    journeys = lead_journeys or GrpcLeadJourneys(config.peer_address("lead"))
    built: list[Attributions] = []
    schedules: list[TrainingSchedule] = []

    def registrations(
        store: Application[Any], executor: CommandExecutor
    ) -> list[Registration]:
        assert isinstance(store, AttributionStore)  # noqa: S101
        attributions = Attributions(
            store, executor, lead_journeys=journeys, settings=settings
        )
        built.append(attributions)
        return [
            Registration(
                attribution_service_pb2_grpc.add_AttributionServiceServicer_to_server,
                AttributionServicer(attributions),
                SERVICE_NAME,
            )
        ]

    async def stop_training() -> None:
        for schedule in schedules:
            await schedule.close()

    on_stop = [stop_training]
    if lead_journeys is None:
        # The channel to the lead service closes after the last call finished.
        on_stop.append(journeys.close)
    try:
        service = await start_service(
            config,
            store_class=AttributionStore,
            registrations=registrations,
            to_message=to_message,
            source=SOURCE,
            relay_settings=relay_settings,
            consumers=lambda: attribution_subscriptions(built[0]),
            on_stop=on_stop,
        )
    except BaseException:
        if lead_journeys is None:
            await journeys.close()
        raise
    schedule = TrainingSchedule(built[0], interval)
    schedules.append(schedule)
    schedule.start()
    return service


def main() -> None:
    config = ServiceConfig.from_env("attribution")
    settings = AttributionSettings.from_env()
    run_forever(lambda: bootstrap(config, settings=settings))


if __name__ == "__main__":
    main()
