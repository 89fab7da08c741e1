"""Runs the lead service: `python -m services.lead`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.config import ServiceConfig
from closedloop.grpckit.server import Registration
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.process import run_forever
from closedloop.service import Service, start_service
from services.lead.api import SERVICE_NAME, LeadServicer
from services.lead.application import Leads, LeadStore
from services.lead.subscriptions import lead_subscriptions
from services.lead.wire import SOURCE, to_message

if TYPE_CHECKING:
    from eventsourcing.application import Application

    from closedloop.eventstore.unit_of_work import CommandExecutor
    from closedloop.relay import RelaySettings


async def bootstrap(
    config: ServiceConfig, *, relay_settings: RelaySettings | None = None
) -> Service:
    built: list[Leads] = []

    def registrations(
        store: Application[Any], executor: CommandExecutor
    ) -> list[Registration]:
        assert isinstance(store, LeadStore)  # noqa: S101
        leads = Leads(store, executor, secret_key=config.secret_key)
        built.append(leads)
        return [
            Registration(
                lead_service_pb2_grpc.add_LeadServiceServicer_to_server,
                LeadServicer(leads),
                SERVICE_NAME,
            )
        ]

    return await start_service(
        config,
        store_class=LeadStore,
        registrations=registrations,
        to_message=to_message,
        source=SOURCE,
        relay_settings=relay_settings,
        consumers=lambda: lead_subscriptions(built[0]),
    )


def main() -> None:
    config = ServiceConfig.from_env("lead")
    run_forever(lambda: bootstrap(config))


if __name__ == "__main__":
    main()
