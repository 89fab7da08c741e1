"""What the deal service publishes: every event in order, personal fields encrypted.

The service runs in process against a real nats-server and SQLite; the lead context is
a fake port (the real gRPC call is covered in test_deal_lead_call.py).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import grpc
import nats
import pytest

from closedloop.bus.cloudevents import decode_payload
from closedloop.bus.streams import context_stream
from closedloop.common.v1.money_pb2 import Money
from closedloop.config import ServiceConfig
from closedloop.deal.v1 import deal_service_pb2 as pb
from closedloop.deal.v1 import deal_service_pb2_grpc, events_pb2, types_pb2
from closedloop.eventstore.personal import TOKEN_PREFIX
from closedloop.testing.streams import eventually, read_stream
from services.deal.__main__ import bootstrap
from services.deal.application import Deals, DealStore
from services.deal.domain import LeadStanding, lead_deals_id
from services.deal.lead_directory import LeadDirectory

if TYPE_CHECKING:
    from pathlib import Path

    from closedloop.eventstore.metadata import EventMeta
    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.nats]

DEAL_NAME = "Platform deal for Ana Lima"
LOSS_TEXT = "Ana Lima left the company"


class KnownLeads(LeadDirectory):
    def __init__(self, *lead_ids: uuid.UUID) -> None:
        self.lead_ids = set(lead_ids)

    async def find_lead(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadStanding | None:
        return LeadStanding(lead_id, "sal") if lead_id in self.lead_ids else None


async def test_the_stream_holds_every_event_encrypted_where_personal(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    # A nats-server of its own: the relay resumes from the position in the stream's
    # last message, which another test's store would have left there.
    nats_server = own_nats_server
    lead_id = uuid.uuid4()
    directory = KnownLeads(lead_id)
    config = ServiceConfig.from_env(
        "deal",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path),
            "CLOSEDLOOP_NATS_URL": nats_server.url,
            "CLOSEDLOOP_DEAL_GRPC_PORT": "0",
            "CLOSEDLOOP_DEAL_STORE_URL": f"sqlite:///{tmp_path / 'deal.db'}",
        },
    )
    service = await bootstrap(config, lead_directory=directory)
    nc = await nats.connect(nats_server.url)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.server.port}"
        ) as channel:
            stub = deal_service_pb2_grpc.DealServiceStub(channel)
            usd = Money(minor_units=50_000_00, currency="USD")
            won = (
                await stub.OpenDeal(
                    pb.OpenDealRequest(
                        lead_id=str(lead_id), name=DEAL_NAME, amount=usd
                    ),
                    timeout=10,
                )
            ).deal.deal_id
            await stub.ChangeDealStage(
                pb.ChangeDealStageRequest(
                    deal_id=won, stage=types_pb2.DEAL_STAGE_PROPOSAL
                ),
                timeout=10,
            )
            await stub.WinDeal(pb.WinDealRequest(deal_id=won), timeout=10)
            await stub.RecordRevenue(
                pb.RecordRevenueRequest(
                    deal_id=won, amount=usd, kind=types_pb2.REVENUE_KIND_NEW
                ),
                timeout=10,
            )
            lost = (
                await stub.OpenDeal(
                    pb.OpenDealRequest(
                        lead_id=str(lead_id), name=DEAL_NAME, amount=usd
                    ),
                    timeout=10,
                )
            ).deal.deal_id
            await stub.LoseDeal(
                pb.LoseDealRequest(
                    deal_id=lost,
                    reason=LOSS_TEXT,
                    loss_reason=types_pb2.LOSS_REASON_FIT,
                ),
                timeout=10,
            )
        assert isinstance(service.store, DealStore)
        deals = Deals(service.store, service.executor, lead_directory=directory)
        assert sorted(await deals.erase_lead(lead_id)) == sorted(
            uuid.UUID(i) for i in (won, lost)
        )

        ours = {won, lost, str(lead_deals_id(lead_id))}

        async def published() -> list[Any]:
            messages = [
                m
                for m in await read_stream(nc.jetstream(), context_stream("deal"))
                if (m.headers or {}).get("ce-subject") in ours
            ]
            return messages if len(messages) >= 8 else []

        messages = await eventually(published, timeout=20)
    finally:
        await nc.close()
        await service.stop(grace=1.0)

    by_deal: dict[str, list[str]] = {}
    payloads: dict[str, list[Any]] = {}
    for message in messages:
        headers = message.headers or {}
        assert message.subject == headers["ce-type"]
        assert headers["ce-source"] == "/closedloop/deal"
        decoded = decode_payload(headers["ce-type"], message.data)
        by_deal.setdefault(headers["ce-subject"], []).append(headers["ce-type"])
        payloads.setdefault(headers["ce-type"], []).append(decoded)
        assert getattr(decoded, "lead_id") == str(lead_id)  # noqa: B009
        assert getattr(decoded, "deal_id") == headers["ce-subject"]  # noqa: B009
        assert DEAL_NAME.encode() not in message.data
        assert LOSS_TEXT.encode() not in message.data

    prefix = "closedloop.deal.v1."
    assert by_deal == {
        won: [
            prefix + "DealOpened",
            prefix + "DealStageChanged",
            prefix + "DealWon",
            prefix + "RevenueRecognized",
            prefix + "DealPersonalDataErased",
        ],
        lost: [
            prefix + "DealOpened",
            prefix + "DealLost",
            prefix + "DealPersonalDataErased",
        ],
    }  # and nothing of the lead's deal index
    for opened in payloads[prefix + "DealOpened"]:
        assert isinstance(opened, events_pb2.DealOpened)
        assert opened.name.startswith(TOKEN_PREFIX)
        assert opened.amount == Money(minor_units=50_000_00, currency="USD")
    (lost_message,) = payloads[prefix + "DealLost"]
    assert lost_message.reason.startswith(TOKEN_PREFIX)
    assert lost_message.loss_reason == types_pb2.LOSS_REASON_FIT
    (won_message,) = payloads[prefix + "DealWon"]
    assert won_message.amount.minor_units == 50_000_00
