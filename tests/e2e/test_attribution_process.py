"""Attribution end to end: lead, deal and attribution as real processes over real NATS.

The worked example of DOMAIN.md 4.4 is played through the APIs: four touches, a
lead, an opportunity and a win of 1,000.00 USD. The RevenueAttributed events on the
attribution stream must carry the table of that example to the cent, and the
credits of every model must sum exactly to the won amount. Then the attribution
service is restarted with its durable consumer deleted, so it reads the whole deal
stream again: every conversion must still be credited exactly once per model.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import grpc
import nats
import pytest

from closedloop.attribution.v1 import attribution_service_pb2 as pb
from closedloop.attribution.v1 import attribution_service_pb2_grpc, events_pb2
from closedloop.bus.cloudevents import decode_payload
from closedloop.bus.streams import StreamSettings, context_stream, provision_streams
from closedloop.common.v1.money_pb2 import Money
from closedloop.deal.v1 import deal_service_pb2 as deal_pb
from closedloop.deal.v1 import deal_service_pb2_grpc
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.protobuf import timestamp
from closedloop.testing.processes import ServiceProcess
from closedloop.testing.streams import eventually, read_stream

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from nats.js import JetStreamContext

    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

MODELS = (
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "time_decay",
    "position_based",
    "w_shaped",
    "full_path",
    "markov",
    "shapley",
)
# DOMAIN.md 4.4, in cents for T1..T4.
EXAMPLE_TABLE = {
    "first_touch": ["1000.00", "0", "0", "0"],
    "last_touch": ["0", "0", "0", "1000.00"],
    "last_non_direct": ["0", "0", "1000.00", "0"],
    "linear": ["250.00", "250.00", "250.00", "250.00"],
    "time_decay": ["43.68", "96.44", "286.63", "573.25"],
    "position_based": ["400.00", "100.00", "100.00", "400.00"],
    "w_shaped": ["300.00", "100.00", "300.00", "300.00"],
    "full_path": ["225.00", "100.00", "225.00", "450.00"],
    # Not trained yet: linear, with fallback "linear".
    "markov": ["250.00", "250.00", "250.00", "250.00"],
    "shapley": ["250.00", "250.00", "250.00", "250.00"],
}
DEAL_DURABLE = "attribution-deal-events"


def noon(day: int) -> datetime:
    return datetime(2026, 3, day, 12, tzinfo=UTC)


@pytest.fixture
async def services(
    own_nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[dict[str, ServiceProcess]]:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await nc.close()
    data = tmp_path / "data"
    common = {"CLOSEDLOOP_SECRET_KEY": "test-secret-shared-by-all-services"}
    lead = await ServiceProcess(
        "lead", data, own_nats_server.url, extra_env=common
    ).start()
    peers = {**common, "CLOSEDLOOP_LEAD_ADDRESS": lead.address}
    deal = await ServiceProcess(
        "deal", data, own_nats_server.url, extra_env=peers
    ).start()
    attribution = await ServiceProcess(
        "attribution",
        data,
        own_nats_server.url,
        extra_env={**peers, "CLOSEDLOOP_ATTRIBUTION_TRAIN_INTERVAL_SECONDS": "0"},
    ).start()
    running = {"lead": lead, "deal": deal, "attribution": attribution}
    yield running
    for service in running.values():
        await service.stop()


async def attributed(js: JetStreamContext) -> list[events_pb2.RevenueAttributed]:
    stream = context_stream("attribution")
    if (await js.stream_info(stream)).state.messages == 0:
        return []
    found = []
    for msg in await read_stream(js, stream):
        if msg.subject == events_pb2.RevenueAttributed.DESCRIPTOR.full_name:
            event = decode_payload(msg.subject, msg.data or b"")
            assert isinstance(event, events_pb2.RevenueAttributed)
            found.append(event)
    return found


async def wait_for(js: JetStreamContext, count: int) -> list[Any]:
    async def enough() -> list[Any]:
        found = await attributed(js)
        return found if len(found) >= count else []

    found: list[Any] = await eventually(enough, timeout=60)
    return found


def per_conversion(events: list[events_pb2.RevenueAttributed]) -> Counter[Any]:
    return Counter((e.deal_id, e.revenue_id, e.model) for e in events)


async def test_touches_to_won_deal_to_revenue_attributed(
    services: dict[str, ServiceProcess], own_nats_server: NatsServer
) -> None:
    lead_channel = grpc.aio.insecure_channel(services["lead"].address)
    deal_channel = grpc.aio.insecure_channel(services["deal"].address)
    leads = lead_service_pb2_grpc.LeadServiceStub(lead_channel)
    deals = deal_service_pb2_grpc.DealServiceStub(deal_channel)
    anonymous_id = f"cookie-{uuid.uuid4().hex[:8]}"

    # T1..T3 while anonymous; the lead is captured on March 22; T4 after.
    touch_ids = []
    for day, source, medium, campaign in (
        (1, "facebook", "paid", "spring-launch"),
        (9, "google", "organic", ""),
        (20, "google", "cpc", "brand"),
    ):
        reply = await leads.RecordTouchpoint(
            lead_pb.RecordTouchpointRequest(
                anonymous_id=anonymous_id,
                source=source,
                medium=medium,
                campaign=campaign,
                occurred_at=timestamp(noon(day)),
                idempotency_key=f"t{day}",
            )
        )
        touch_ids.append(reply.touchpoint_id)
    captured = await leads.CaptureLead(
        lead_pb.CaptureLeadRequest(
            anonymous_id=anonymous_id,
            email=f"{anonymous_id}@example.com",
            name="Ann",
            occurred_at=timestamp(noon(22)),
        )
    )
    lead_id = captured.lead.lead_id
    reply = await leads.RecordTouchpoint(
        lead_pb.RecordTouchpointRequest(
            lead_id=lead_id,
            channel=lead_types.CHANNEL_DIRECT,
            occurred_at=timestamp(noon(27)),
        )
    )
    touch_ids.append(reply.touchpoint_id)
    journey = await leads.GetJourney(lead_pb.GetJourneyRequest(lead_id=lead_id))
    assert [tp.channel for tp in journey.touchpoints] == [
        lead_types.CHANNEL_PAID_SOCIAL,
        lead_types.CHANNEL_ORGANIC_SEARCH,
        lead_types.CHANNEL_PAID_SEARCH,
        lead_types.CHANNEL_DIRECT,
    ]

    opened = await deals.OpenDeal(
        deal_pb.OpenDealRequest(
            lead_id=lead_id,
            name="Ann's platform deal",
            amount=Money(minor_units=1_200_00, currency="USD"),
            occurred_at=timestamp(noon(29)),
            idempotency_key="deal-1",
        )
    )
    deal_id = opened.deal.deal_id
    await deals.WinDeal(
        deal_pb.WinDealRequest(
            deal_id=deal_id,
            amount=Money(minor_units=1_000_00, currency="USD"),
            closed_at=timestamp(noon(31)),
        )
    )

    nc = await nats.connect(own_nats_server.url)
    js = nc.jetstream()
    try:
        events = await wait_for(js, len(MODELS))
        assert sorted(e.model for e in events) == sorted(MODELS)
        for e in events:
            assert e.deal_id == deal_id
            assert e.lead_id == lead_id
            assert e.conversion_kind == events_pb2.CONVERSION_KIND_WON
            assert e.amount == Money(minor_units=1_000_00, currency="USD")
            assert sum(c.amount.minor_units for c in e.credits) == 1_000_00, e.model
            assert [c.touchpoint_id for c in e.credits] == touch_ids
            expected = [int(Decimal(v) * 100) for v in EXAMPLE_TABLE[e.model]]
            assert [c.amount.minor_units for c in e.credits] == expected, e.model
            untrained = e.model in {"markov", "shapley"}
            assert e.fallback == ("linear" if untrained else ""), e.model
        linear = next(e for e in events if e.model == "linear")
        assert [c.channel for c in linear.credits] == [
            "paid_social",
            "organic_search",
            "paid_search",
            "direct",
        ]
        assert [c.campaign for c in linear.credits] == [
            "spring-launch",
            "",
            "brand",
            "",
        ]

        # Revenue recognised later, credited with the journey at the win.
        await deals.RecordRevenue(
            deal_pb.RecordRevenueRequest(
                deal_id=deal_id,
                amount=Money(minor_units=333_33, currency="USD"),
                kind=deal_types.REVENUE_KIND_RENEWAL,
                recognized_at=timestamp(datetime(2026, 9, 1, tzinfo=UTC)),
                idempotency_key="renewal-1",
            )
        )
        events = await wait_for(js, 2 * len(MODELS))
        renewal = [e for e in events if e.revenue_id]
        assert len(renewal) == len(MODELS)
        for e in renewal:
            assert sum(c.amount.minor_units for c in e.credits) == 333_33, e.model
        assert [
            c.amount.minor_units
            for c in next(e for e in renewal if e.model == "linear").credits
        ] == [83_34, 83_33, 83_33, 83_33]

        # The service reads the deal stream from the start again after a restart.
        await services["attribution"].stop()
        await js.delete_consumer(context_stream("deal"), DEAL_DURABLE)
        await services["attribution"].start()
        # A new conversion comes after the replayed ones in the stream.
        await deals.RecordRevenue(
            deal_pb.RecordRevenueRequest(
                deal_id=deal_id,
                amount=Money(minor_units=-100_00, currency="USD"),
                kind=deal_types.REVENUE_KIND_CONTRACTION,
                recognized_at=timestamp(datetime(2026, 10, 1, tzinfo=UTC)),
                idempotency_key="contraction-1",
            )
        )
        events = await wait_for(js, 3 * len(MODELS))
        counts = per_conversion(events)
        assert len(counts) == 3 * len(MODELS)
        assert set(counts.values()) == {1}, counts

        async with grpc.aio.insecure_channel(
            services["attribution"].address
        ) as channel:
            attribution = attribution_service_pb2_grpc.AttributionServiceStub(channel)
            compared = await attribution.CompareModels(
                pb.CompareModelsRequest(deal_id=deal_id)
            )
            assert compared.revenue.minor_units == 1_000_00 + 333_33 - 100_00
            for view in compared.attributions:
                total = sum(c.amount.minor_units for c in view.credits)
                assert total == compared.revenue.minor_units, view.model
                assert len(view.conversions) == 3
            got = await attribution.GetDealAttribution(
                pb.GetDealAttributionRequest(deal_id=deal_id, model="w_shaped")
            )
            assert got.attribution.won_amount.minor_units == 1_000_00
            assert got.attribution.model_key.startswith(
                "w_shaped(lookback=7776000s,milestone_weights=first_touch:3/10+"
            )
            assert "Traceback" not in services["attribution"].log_text()
    finally:
        await nc.close()
        await lead_channel.close()
        await deal_channel.close()
