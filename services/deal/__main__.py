"""Runs the deal service: `python -m services.deal`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.config import ServiceConfig
from closedloop.deal.v1 import deal_service_pb2_grpc
from closedloop.grpckit.server import Registration
from closedloop.process import run_forever
from closedloop.service import Service, start_service
from services.deal.api import SERVICE_NAME, DealServicer
from services.deal.application import Deals, DealStore
from services.deal.lead_directory import GrpcLeadDirectory, LeadDirectory
from services.deal.subscriptions import deal_subscriptions
from services.deal.wire import SOURCE, to_message

if TYPE_CHECKING:
    from eventsourcing.application import Application

    from closedloop.eventstore.unit_of_work import CommandExecutor
    from closedloop.relay import RelaySettings


async def bootstrap(
    config: ServiceConfig,
    *,
    lead_directory: LeadDirectory | None = None,
    relay_settings: RelaySettings | None = None,
) -> Service:
    """Starts the service; without a `lead_directory` it asks the lead service."""
    directory = lead_directory or GrpcLeadDirectory(config.peer_address("lead"))

    built: list[Deals] = []

    def registrations(
        store: Application[Any], executor: CommandExecutor
    ) -> list[Registration]:
        assert isinstance(store, DealStore)  # noqa: S101
        deals = Deals(store, executor, lead_directory=directory)
        built.append(deals)
        return [
            Registration(
                deal_service_pb2_grpc.add_DealServiceServicer_to_server,
                DealServicer(deals),
                SERVICE_NAME,
            )
        ]

    try:
        return await start_service(
            config,
            store_class=DealStore,
            registrations=registrations,
            to_message=to_message,
            source=SOURCE,
            relay_settings=relay_settings,
            consumers=lambda: deal_subscriptions(built[0]),
            # The channel to the lead service closes after the last call finished.
            on_stop=[] if lead_directory is not None else [directory.close],
        )
    except BaseException:
        if lead_directory is None:
            await directory.close()
        raise


def main() -> None:
    config = ServiceConfig.from_env("deal")
    run_forever(lambda: bootstrap(config))


if __name__ == "__main__":
    main()
