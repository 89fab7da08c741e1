"""Runs the consent service: `python -m services.consent`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.config import ServiceConfig
from closedloop.consent.v1 import consent_service_pb2_grpc
from closedloop.grpckit.server import Registration
from closedloop.process import run_forever
from closedloop.service import Service, start_service
from services.consent.api import SERVICE_NAME, ConsentServicer
from services.consent.application import Consents, ConsentStore
from services.consent.wire import SOURCE, to_message

if TYPE_CHECKING:
    from eventsourcing.application import Application

    from closedloop.eventstore.unit_of_work import CommandExecutor
    from closedloop.relay import RelaySettings


async def bootstrap(
    config: ServiceConfig, *, relay_settings: RelaySettings | None = None
) -> Service:
    def registrations(
        store: Application[Any], executor: CommandExecutor
    ) -> list[Registration]:
        assert isinstance(store, ConsentStore)  # noqa: S101
        consents = Consents(store, executor, secret_key=config.secret_key)
        return [
            Registration(
                consent_service_pb2_grpc.add_ConsentServiceServicer_to_server,
                ConsentServicer(consents),
                SERVICE_NAME,
            )
        ]

    return await start_service(
        config,
        store_class=ConsentStore,
        registrations=registrations,
        to_message=to_message,
        source=SOURCE,
        relay_settings=relay_settings,
    )


def main() -> None:
    config = ServiceConfig.from_env("consent")
    run_forever(lambda: bootstrap(config))


if __name__ == "__main__":
    main()
