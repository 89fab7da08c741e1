"""The attribution service over real NATS: deal and lead events in, credits out.

Deal and lead events are published onto their streams the way the other services'
relays publish them (CloudEvents headers, protobuf payload). The attribution service
runs in process with a fake lead port, so a lead-service outage can be played.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import nats
import pytest

from closedloop.attribution.v1 import attribution_service_pb2 as pb
from closedloop.attribution.v1 import attribution_service_pb2_grpc, events_pb2
from closedloop.bus.cloudevents import Envelope, decode_payload
from closedloop.bus.streams import StreamSettings, context_stream, provision_streams
from closedloop.common.v1.money_pb2 import Money
from closedloop.config import ServiceConfig
from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.errors import Unavailable
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.protobuf import timestamp
from closedloop.testing.streams import eventually, read_stream
from services.attribution.__main__ import bootstrap
from services.attribution.lead_journeys import LeadJourney, LeadJourneys
from services.attribution.models import Touch
from services.attribution.rules import MODELS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from google.protobuf.message import Message
    from nats.js import JetStreamContext

    from closedloop.eventstore.metadata import EventMeta
    from closedloop.natsserver import NatsServer
    from closedloop.service import Service

pytestmark = pytest.mark.nats

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
CHANNEL_NUMBERS = {
    "paid_social": lead_types.CHANNEL_PAID_SOCIAL,
    "organic_search": lead_types.CHANNEL_ORGANIC_SEARCH,
    "paid_search": lead_types.CHANNEL_PAID_SEARCH,
    "direct": lead_types.CHANNEL_DIRECT,
    "email": lead_types.CHANNEL_EMAIL,
}


async def read_attribution_stream(js: JetStreamContext) -> list[Any]:
    stream = context_stream("attribution")
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    return await read_stream(js, stream)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


class FakeLeadJourneys(LeadJourneys):
    """The lead context's answers; `down` plays an outage."""

    def __init__(self) -> None:
        self.journeys: dict[uuid.UUID, LeadJourney] = {}
        self.down = False
        self.asked = 0

    async def journey(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadJourney | None:
        self.asked += 1
        if self.down:
            raise Unavailable("the lead service is away; retry")
        return self.journeys.get(lead_id)


@dataclass
class World:
    """Publishes other contexts' events as their relays would."""

    js: JetStreamContext
    leads: FakeLeadJourneys
    stub: attribution_service_pb2_grpc.AttributionServiceStub
    service: Service
    sequences: Counter[str] = field(default_factory=Counter)

    async def publish(self, message: Message, subject_id: str) -> str:
        self.sequences[subject_id] += 1
        source = "/closedloop/" + message.DESCRIPTOR.full_name.split(".")[1]
        envelope = Envelope(
            event_id=str(uuid.uuid4()),
            event_type=message.DESCRIPTOR.full_name,
            source=source,
            subject=subject_id,
            time=datetime.now(UTC),
            sequence=self.sequences[subject_id],
        )
        await self.js.publish(
            envelope.nats_subject,
            message.SerializeToString(),
            headers=envelope.headers(),
        )
        return envelope.event_id

    async def person(
        self, channels: list[str], *, lead_id: uuid.UUID | None = None
    ) -> tuple[uuid.UUID, tuple[Touch, ...]]:
        """A visitor who touched us once a day, then became a lead (if lead_id)."""
        anonymous_id = f"cookie-{uuid.uuid4().hex[:8]}"
        touches = []
        for i, channel in enumerate(channels):
            tp = lead_types.Touchpoint(
                touchpoint_id=str(uuid.uuid4()),
                anonymous_id=anonymous_id,
                channel=CHANNEL_NUMBERS[channel],  # type: ignore[arg-type]
                campaign="spring",
                occurred_at=timestamp(day(i)),
            )
            await self.publish(lead_events.TouchpointRecorded(touchpoint=tp), "v")
            touches.append(Touch(tp.touchpoint_id, channel, "spring", day(i), i))
        if lead_id is not None:
            created = day(len(channels))
            await self.publish(
                lead_events.LeadCaptured(
                    lead_id=str(lead_id),
                    anonymous_id=anonymous_id,
                    occurred_at=timestamp(created),
                ),
                str(lead_id),
            )
            await self.publish(
                lead_events.VisitorIdentified(
                    lead_id=str(lead_id),
                    anonymous_id=anonymous_id,
                    occurred_at=timestamp(created),
                ),
                str(lead_id),
            )
            self.leads.journeys[lead_id] = LeadJourney(lead_id, created, tuple(touches))
        return lead_id or uuid.uuid4(), tuple(touches)

    async def deal(
        self, lead_id: uuid.UUID, *, amount: int, won: bool = True
    ) -> uuid.UUID:
        deal_id = uuid.uuid4()
        usd = Money(minor_units=amount, currency="USD")
        await self.publish(
            deal_events.DealOpened(
                deal_id=str(deal_id),
                lead_id=str(lead_id),
                name="pii:v1:encrypted",
                amount=usd,
                occurred_at=timestamp(day(20)),
            ),
            str(deal_id),
        )
        closing: Message = (
            deal_events.DealWon(
                deal_id=str(deal_id),
                lead_id=str(lead_id),
                amount=usd,
                closed_at=timestamp(day(25)),
            )
            if won
            else deal_events.DealLost(
                deal_id=str(deal_id),
                lead_id=str(lead_id),
                loss_reason=deal_types.LOSS_REASON_PRICE,
                occurred_at=timestamp(day(25)),
            )
        )
        await self.publish(closing, str(deal_id))
        return deal_id

    async def attributed(self) -> list[events_pb2.RevenueAttributed]:
        found = []
        for msg in await read_attribution_stream(self.js):
            if msg.subject == events_pb2.RevenueAttributed.DESCRIPTOR.full_name:
                event = decode_payload(msg.subject, msg.data or b"")
                assert isinstance(event, events_pb2.RevenueAttributed)
                found.append(event)
        return found

    async def attributed_for(
        self, deal_id: uuid.UUID, count: int = len(MODELS)
    ) -> list[events_pb2.RevenueAttributed]:
        async def enough() -> list[events_pb2.RevenueAttributed]:
            mine = [e for e in await self.attributed() if e.deal_id == str(deal_id)]
            return mine if len(mine) >= count else []

        found: list[events_pb2.RevenueAttributed] = await eventually(enough, timeout=30)
        return found

    async def on_stream(self, message_type: type[Any]) -> list[Any]:
        name = message_type.DESCRIPTOR.full_name
        return [
            decode_payload(msg.subject, msg.data or b"")
            for msg in await read_attribution_stream(self.js)
            if msg.subject == name
        ]


@pytest.fixture
async def world(
    own_nats_server: NatsServer, tmp_path: Path, store_url: str
) -> AsyncIterator[World]:
    """The service on both event stores (conftest's `store_url`)."""
    nc = await nats.connect(own_nats_server.url)
    js = nc.jetstream()
    await provision_streams(js, StreamSettings())
    leads = FakeLeadJourneys()
    config = ServiceConfig.from_env(
        "attribution",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path),
            "CLOSEDLOOP_NATS_URL": own_nats_server.url,
            "CLOSEDLOOP_ATTRIBUTION_GRPC_PORT": "0",
            "CLOSEDLOOP_ATTRIBUTION_STORE_URL": store_url,
        },
    )
    service = await bootstrap(config, lead_journeys=leads, train_interval=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.server.port}")
    stub = attribution_service_pb2_grpc.AttributionServiceStub(channel)
    try:
        yield World(js, leads, stub, service)
    finally:
        await channel.close()
        await service.stop(grace=1.0)
        await nc.close()


async def test_a_won_deal_is_attributed_once_under_every_model(world: World) -> None:
    lead_id, touches = await world.person(
        ["paid_social", "organic_search", "paid_search", "direct"], lead_id=uuid.uuid4()
    )
    deal_id = await world.deal(lead_id, amount=100_001)
    events = await world.attributed_for(deal_id)
    assert sorted(e.model for e in events) == sorted(MODELS)
    for e in events:
        assert sum(c.amount.minor_units for c in e.credits) == 100_001, e.model
        assert [c.touchpoint_id for c in e.credits] == [
            t.touchpoint_id for t in touches
        ]
    linear = next(e for e in events if e.model == "linear")
    assert [c.amount.minor_units for c in linear.credits] == [
        25_001,
        25_000,
        25_000,
        25_000,
    ]

    # The same DealWon delivered again (a new message id, as after a republish).
    await world.publish(
        deal_events.DealWon(
            deal_id=str(deal_id),
            lead_id=str(lead_id),
            amount=Money(minor_units=100_001, currency="USD"),
            closed_at=timestamp(day(25)),
        ),
        str(deal_id),
    )
    # A later deal proves the consumer got past the repeat.
    other, _ = await world.person(["email"], lead_id=uuid.uuid4())
    later = await world.deal(other, amount=5)
    await world.attributed_for(later)
    again = [e for e in await world.attributed() if e.deal_id == str(deal_id)]
    assert Counter(e.model for e in again) == Counter(MODELS)

    reply = await world.stub.GetDealAttribution(
        pb.GetDealAttributionRequest(deal_id=str(deal_id), model="linear")
    )
    assert reply.attribution.revenue.minor_units == 100_001
    assert [c.amount.minor_units for c in reply.attribution.credits] == [
        25_001,
        25_000,
        25_000,
        25_000,
    ]


async def test_recognised_revenue_is_credited_with_the_win(world: World) -> None:
    lead_id, _ = await world.person(["paid_search", "direct"], lead_id=uuid.uuid4())
    deal_id = await world.deal(lead_id, amount=1_000)
    revenue_id = uuid.uuid4()
    await world.publish(
        deal_events.RevenueRecognized(
            deal_id=str(deal_id),
            lead_id=str(lead_id),
            revenue_id=str(revenue_id),
            amount=Money(minor_units=-301, currency="USD"),
            kind=deal_types.REVENUE_KIND_CONTRACTION,
            recognized_at=timestamp(day(90)),
        ),
        str(deal_id),
    )
    events = await world.attributed_for(deal_id, 2 * len(MODELS))
    contraction = [e for e in events if e.revenue_id == str(revenue_id)]
    assert len(contraction) == len(MODELS)
    for e in contraction:
        assert e.conversion_kind == events_pb2.CONVERSION_KIND_REVENUE_RECOGNIZED
        assert e.revenue_kind == "contraction"
        assert sum(c.amount.minor_units for c in e.credits) == -301
    reply = await world.stub.CompareModels(
        pb.CompareModelsRequest(deal_id=str(deal_id))
    )
    assert reply.revenue.minor_units == 699
    assert [a.model for a in reply.attributions] == list(MODELS)
    for attribution in reply.attributions:
        assert sum(c.amount.minor_units for c in attribution.credits) == 699
        assert len(attribution.conversions) == 2


async def test_a_lead_service_outage_delays_the_credit_without_losing_it(
    world: World,
) -> None:
    lead_id, _ = await world.person(["email", "direct"], lead_id=uuid.uuid4())
    world.leads.down = True
    deal_id = await world.deal(lead_id, amount=4_200)

    async def asked_twice() -> bool:
        return world.leads.asked >= 2  # delivered, refused, delivered again

    await eventually(asked_twice, timeout=30)
    assert [e for e in await world.attributed() if e.deal_id == str(deal_id)] == []
    world.leads.down = False
    events = await world.attributed_for(deal_id)
    assert len(events) == len(MODELS)


async def test_training_learns_from_the_streams_and_later_wins_use_it(
    world: World,
) -> None:
    won_lead, _ = await world.person(["paid_search", "direct"], lead_id=uuid.uuid4())
    await world.deal(won_lead, amount=600)
    lost_lead, _ = await world.person(["paid_social", "direct"], lead_id=uuid.uuid4())
    await world.deal(lost_lead, amount=900, won=False)
    await world.person(["organic_search"])  # a visitor who never became a lead
    assert world.service.consumers

    async def trained() -> pb.TrainModelResponse | None:
        try:
            reply = await world.stub.TrainModel(pb.TrainModelRequest())
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            return None
        # Every journey is in once the consumers caught up.
        return reply if reply.channel_models[0].journeys == 3 else None

    reply = await eventually(trained, timeout=30)
    by_model = {m.model: m for m in reply.channel_models}
    assert set(by_model) == {"markov", "shapley"}
    markov = by_model["markov"]
    assert (markov.journeys, markov.converting_journeys) == (3, 1)
    # Order 1 forgets where a journey came from: from direct, half convert, so
    # removing either paid channel halves P = 1/3.
    weights = {c.channel: c.weight for c in markov.channels}
    assert weights == pytest.approx(
        {"direct": 1.0, "organic_search": 0.0, "paid_search": 0.5, "paid_social": 0.5}
    )
    assert markov.conversion_probability == pytest.approx(1 / 3)

    async def both_published() -> list[Any]:
        # Tries before the consumers caught up trained on fewer journeys.
        found = [
            m
            for m in await world.on_stream(events_pb2.ChannelModelTrained)
            if m.journeys == 3
        ]
        return found if len(found) >= 2 else []

    published = await eventually(both_published, timeout=30)
    assert sorted(m.model for m in published) == ["markov", "shapley"]
    got = await world.stub.GetChannelModel(pb.GetChannelModelRequest(model="markov"))
    assert got.channel_model == markov

    new_lead, _ = await world.person(
        ["paid_search", "organic_search", "direct"], lead_id=uuid.uuid4()
    )
    deal_id = await world.deal(new_lead, amount=1_000)
    events = {e.model: e for e in await world.attributed_for(deal_id)}
    assert events["markov"].fallback == ""
    # Removal effects 0.5, 0 and 1: a third, nothing, two thirds.
    assert [c.amount.minor_units for c in events["markov"].credits] == [333, 0, 667]
    assert events["linear"].fallback == ""


async def test_spend_is_recorded_published_and_listed(world: World) -> None:
    request = pb.RecordSpendRequest(
        channel="paid_search",
        campaign="brand",
        amount=Money(minor_units=250_000, currency="USD"),
        period_start=timestamp(day(0)),
        period_end=timestamp(day(31)),
        idempotency_key="invoice-2026-03",
    )
    first = await world.stub.RecordSpend(request)
    again = await world.stub.RecordSpend(request)
    assert first.created
    assert not again.created
    assert again.spend.spend_id == first.spend.spend_id

    async def published() -> list[Any]:
        return await world.on_stream(events_pb2.SpendRecorded)

    (recorded,) = await eventually(published, timeout=30)
    assert recorded.spend_id == first.spend.spend_id
    assert recorded.amount.minor_units == 250_000
    listed = await world.stub.ListSpend(pb.ListSpendRequest(channel="paid_search"))
    assert [s.spend_id for s in listed.spends] == [first.spend.spend_id]
    assert [(t.minor_units, t.currency) for t in listed.totals] == [(250_000, "USD")]
    outside = await world.stub.ListSpend(
        pb.ListSpendRequest(period_start=timestamp(day(31)))
    )
    assert list(outside.spends) == []


async def test_scheduled_training_runs_by_itself(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(own_nats_server.url)
    js = nc.jetstream()
    await provision_streams(js, StreamSettings())
    leads = FakeLeadJourneys()
    config = ServiceConfig.from_env(
        "attribution",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path),
            "CLOSEDLOOP_NATS_URL": own_nats_server.url,
            "CLOSEDLOOP_ATTRIBUTION_GRPC_PORT": "0",
        },
    )
    service = await bootstrap(config, lead_journeys=leads, train_interval=0.2)
    try:
        world = World(js, leads, None, service)  # type: ignore[arg-type]
        lead_id, _ = await world.person(["email"], lead_id=uuid.uuid4())
        await world.deal(lead_id, amount=10)

        async def trained() -> list[Any]:
            return await world.on_stream(events_pb2.ChannelModelTrained)

        models = await eventually(trained, timeout=30)
        assert {m.model for m in models} <= {"markov", "shapley"}
    finally:
        await service.stop(grace=1.0)
        await nc.close()
