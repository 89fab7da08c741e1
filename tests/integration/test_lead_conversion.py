"""DealOpened reaches the lead service over real NATS and it records LeadConverted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import nats
import pytest

from closedloop.bus.cloudevents import decode_payload
from closedloop.bus.streams import StreamSettings, context_stream, provision_streams
from closedloop.common.v1.money_pb2 import Money
from closedloop.config import ServiceConfig
from closedloop.deal.v1 import deal_service_pb2 as deal_pb
from closedloop.deal.v1 import deal_service_pb2_grpc
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.testing.streams import eventually, read_stream
from services.deal.__main__ import bootstrap as deal_bootstrap
from services.lead.__main__ import bootstrap as lead_bootstrap

if TYPE_CHECKING:
    from pathlib import Path

    from closedloop.natsserver import NatsServer

pytestmark = pytest.mark.nats


async def test_deal_opened_converts_the_lead(
    own_nats_server: NatsServer, tmp_path: Path, store_url: str
) -> None:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    base = {
        "CLOSEDLOOP_DATA_DIR": str(tmp_path),
        "CLOSEDLOOP_NATS_URL": own_nats_server.url,
        "CLOSEDLOOP_LEAD_GRPC_PORT": "0",
        "CLOSEDLOOP_DEAL_GRPC_PORT": "0",
    }
    # The lead service's relay maps in a thread here (the deal service's in its
    # outbox worker, as by default): both ways reach the stream.
    lead = await lead_bootstrap(
        ServiceConfig.from_env(
            "lead",
            {
                **base,
                "CLOSEDLOOP_LEAD_STORE_URL": store_url,
                "CLOSEDLOOP_RELAY_OUTBOX": "thread",
            },
        )
    )
    lead_address = f"127.0.0.1:{lead.server.port}"
    deal = await deal_bootstrap(
        ServiceConfig.from_env(
            "deal", {**base, "CLOSEDLOOP_LEAD_ADDRESS": lead_address}
        )
    )
    try:
        async with (
            grpc.aio.insecure_channel(lead_address) as lead_channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{deal.server.port}") as deal_channel,
        ):
            leads = lead_service_pb2_grpc.LeadServiceStub(lead_channel)
            deals = deal_service_pb2_grpc.DealServiceStub(deal_channel)
            captured = await leads.CaptureLead(
                lead_pb.CaptureLeadRequest(email="cora@example.com", name="Cora")
            )
            lead_id = captured.lead.lead_id
            await leads.QualifyLead(
                lead_pb.QualifyLeadRequest(lead_id=lead_id, score=9)
            )
            opened = await deals.OpenDeal(
                deal_pb.OpenDealRequest(
                    lead_id=lead_id,
                    name="Cora's pilot",
                    amount=Money(minor_units=500_000, currency="EUR"),
                    idempotency_key="pilot",
                )
            )
            deal_id = opened.deal.deal_id

            async def stage() -> bool:
                reply = await leads.GetLead(lead_pb.GetLeadRequest(lead_id=lead_id))
                return bool(reply.lead.stage == lead_types.LEAD_STAGE_OPPORTUNITY)

            await eventually(stage, timeout=30)
            reply = await leads.GetLead(lead_pb.GetLeadRequest(lead_id=lead_id))
            assert list(reply.lead.deal_ids) == [deal_id]

        async def converted_on_stream() -> list[lead_events.LeadConverted]:
            found = []
            for msg in await read_stream(nc.jetstream(), context_stream("lead")):
                if msg.subject == "closedloop.lead.v1.LeadConverted":
                    event = decode_payload(msg.subject, msg.data or b"")
                    assert isinstance(event, lead_events.LeadConverted)
                    found.append(event)
            return found

        events = await eventually(converted_on_stream, timeout=30)
        assert [(e.lead_id, e.deal_id) for e in events] == [(lead_id, deal_id)]
    finally:
        await deal.stop()
        await lead.stop()
        await nc.close()
