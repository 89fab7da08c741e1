"""Every stored deal event to its closedloop.deal.v1 message, as decoded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.utils import get_topic
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from closedloop.bus.cloudevents import Envelope, EnvelopeError, decode_payload
from closedloop.deal.v1 import events_pb2, types_pb2
from closedloop.eventstore.metadata import META_ATTRIBUTE, EventMeta
from closedloop.money import Money
from closedloop.protobuf import to_datetime
from closedloop.testing.wire import envelope_for as shared_envelope_for
from closedloop.testing.wire import received as shared_received
from services.deal import wire
from services.deal.domain import Deal, LeadDeals

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from closedloop.common.v1 import money_pb2

T0 = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
LEAD = uuid.UUID("7a1c3e55-2f4b-4c6d-8e9f-0a1b2c3d4e5f")

#: Every event type the service stores and publishes, with its message's name.
MESSAGE_NAMES = {
    "Deal.Opened": "DealOpened",
    "Deal.StageChanged": "DealStageChanged",
    "Deal.AmountUpdated": "DealAmountUpdated",
    "Deal.Won": "DealWon",
    "Deal.Lost": "DealLost",
    "Deal.RevenueRecognized": "RevenueRecognized",
    "Deal.PersonalDataErased": "DealPersonalDataErased",
}

NOT_PUBLISHED = {"idempotency_key"}


def deal_events() -> list[Any]:
    """Real events from the aggregates: every type, some in more than one shape."""
    won = Deal.open(
        lead_id=LEAD,
        name="Acme platform for Ana Lima",
        amount=Money(12_000_00, "USD"),
        expected_close_at=T0 + timedelta(days=60),
        occurred_at=T0,
        idempotency_key="crm-1",
    )
    won.change_stage("qualification", T0 + timedelta(days=1))
    won.change_stage("negotiation", T0 + timedelta(days=2))
    won.update_amount(Money(10_500_00, "USD"), T0 + timedelta(days=3))
    won.win(None, T0 + timedelta(days=4))
    won.recognize_revenue(
        uuid.uuid4(), Money(10_500_00, "USD"), "new", T0 + timedelta(days=5), "inv-1"
    )
    won.recognize_revenue(
        uuid.uuid4(), Money(2_000_00, "USD"), "expansion", T0 + timedelta(days=200)
    )
    won.recognize_revenue(
        uuid.uuid4(), Money(-12_500_00, "USD"), "churn", T0 + timedelta(days=400)
    )
    won.erase_personal_data(T0 + timedelta(days=500))

    lost = Deal.open(
        lead_id=LEAD,
        name="",
        amount=Money(0, "JPY"),
        expected_close_at=None,  # no forecast
        occurred_at=T0 - timedelta(days=400),
    )
    lost.lose("went with a spreadsheet", "no_decision", T0)

    lost_without_category = Deal.open(
        lead_id=uuid.uuid4(),
        name="BHD deal",
        amount=Money(1_005, "BHD"),
        expected_close_at=None,
        occurred_at=T0,
    )
    lost_without_category.lose("", "", T0)

    return [
        *won.collect_events(),
        *lost.collect_events(),
        *lost_without_category.collect_events(),
    ]


def index_events() -> list[Any]:
    index = LeadDeals(LEAD)
    index.add(uuid.uuid4())
    index.add(uuid.uuid4())
    return index.collect_events()


def envelope_for(event: Any, message: Message, **meta: str) -> Envelope:
    return shared_envelope_for(event, message, wire.SOURCE, **meta)


def published(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in NOT_PUBLISHED}


def _money(message: money_pb2.Money) -> Money:
    return Money(message.minor_units, message.currency)


#: What each message's fields are, read back in the domain's terms; the message type
#: names the aggregate a creation event starts.
MESSAGE_ATTRIBUTES: dict[type[Message], Callable[[Any], dict[str, Any]]] = {
    events_pb2.DealOpened: lambda m: {
        "originator_topic": get_topic(Deal),
        "lead_id": uuid.UUID(m.lead_id),
        "name": m.name,
        "amount": _money(m.amount),
        "expected_close_at": (
            to_datetime(m.expected_close_at)
            if m.HasField("expected_close_at")
            else None
        ),
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.DealStageChanged: lambda m: {
        "lead_id": uuid.UUID(m.lead_id),
        "previous_stage": wire.stage_name(m.previous_stage),
        "stage": wire.stage_name(m.stage),
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.DealAmountUpdated: lambda m: {
        "lead_id": uuid.UUID(m.lead_id),
        "amount": _money(m.amount),
        "previous_amount": _money(m.previous_amount),
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.DealWon: lambda m: {
        "lead_id": uuid.UUID(m.lead_id),
        "amount": _money(m.amount),
        "closed_at": to_datetime(m.closed_at),
    },
    events_pb2.DealLost: lambda m: {
        "lead_id": uuid.UUID(m.lead_id),
        "reason": m.reason,
        "loss_reason": wire.loss_reason_name(m.loss_reason),
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.RevenueRecognized: lambda m: {
        "lead_id": uuid.UUID(m.lead_id),
        "revenue_id": uuid.UUID(m.revenue_id),
        "amount": _money(m.amount),
        "kind": wire.revenue_kind_name(m.kind),
        "recognized_at": to_datetime(m.recognized_at),
    },
    events_pb2.DealPersonalDataErased: lambda m: {
        "lead_id": uuid.UUID(m.lead_id),
        "occurred_at": to_datetime(m.occurred_at),
    },
}


#: The event's message as a consumer decodes it, and the attributes it carries.
received = partial(
    shared_received,
    to_message=wire.to_message,
    source=wire.SOURCE,
    read=MESSAGE_ATTRIBUTES,
)


def test_the_scenario_produces_every_event_type() -> None:
    assert {type(e).__qualname__ for e in deal_events()} == set(MESSAGE_NAMES)


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_event_is_carried_whole_by_its_message(qualname: str) -> None:
    events = [e for e in deal_events() if type(e).__qualname__ == qualname]
    assert events
    for original in events:
        message, carried = received(original)

        assert message.DESCRIPTOR.name == MESSAGE_NAMES[qualname]
        assert META_ATTRIBUTE not in vars(original)
        assert META_ATTRIBUTE not in carried
        assert carried == published(vars(original))
        assert carried["originator_id"] == original.originator_id
        assert carried["originator_version"] == original.originator_version
        assert carried["timestamp"] == original.timestamp


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_event_meta_travels_in_the_envelope(qualname: str) -> None:
    original = next(e for e in deal_events() if type(e).__qualname__ == qualname)
    meta = EventMeta.new(correlation_id="corr-1", causation_id="cause-1")
    meta.attach(original)

    _, carried = received(original, **meta.as_dict())

    assert EventMeta(**carried[META_ATTRIBUTE]) == meta
    assert published(carried) == published(vars(original))


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_message_names_follow_events_proto(qualname: str) -> None:
    original = next(e for e in deal_events() if type(e).__qualname__ == qualname)
    message = wire.to_message(original)
    assert message is not None
    expected = f"closedloop.deal.v1.{MESSAGE_NAMES[qualname]}"
    assert message.DESCRIPTOR.full_name == expected
    assert message.DESCRIPTOR.file is events_pb2.DESCRIPTOR


def test_every_message_of_events_proto_is_published() -> None:
    assert set(events_pb2.DESCRIPTOR.message_types_by_name) == set(
        MESSAGE_NAMES.values()
    )


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_every_message_names_the_deal_and_its_lead(qualname: str) -> None:
    for original in (e for e in deal_events() if type(e).__qualname__ == qualname):
        message: Any = wire.to_message(original)
        assert message.deal_id == str(original.originator_id)
        assert message.lead_id == str(original.lead_id)
        assert message.lead_id


def test_messages_carry_money_enums_and_business_time() -> None:
    messages = [wire.to_message(e) for e in deal_events()]
    opened = [m for m in messages if isinstance(m, events_pb2.DealOpened)]
    assert opened[0].amount.minor_units == 12_000_00
    assert opened[0].amount.currency == "USD"
    assert opened[0].occurred_at.ToDatetime(tzinfo=UTC) == T0
    assert opened[0].HasField("expected_close_at")
    assert not opened[1].HasField("expected_close_at")
    assert opened[1].amount.currency == "JPY"

    changed = [m for m in messages if isinstance(m, events_pb2.DealStageChanged)]
    assert [(m.previous_stage, m.stage) for m in changed] == [
        (types_pb2.DEAL_STAGE_DISCOVERY, types_pb2.DEAL_STAGE_QUALIFICATION),
        (types_pb2.DEAL_STAGE_QUALIFICATION, types_pb2.DEAL_STAGE_NEGOTIATION),
    ]
    (updated,) = [m for m in messages if isinstance(m, events_pb2.DealAmountUpdated)]
    assert (updated.previous_amount.minor_units, updated.amount.minor_units) == (
        12_000_00,
        10_500_00,
    )
    (won,) = [m for m in messages if isinstance(m, events_pb2.DealWon)]
    assert won.amount.minor_units == 10_500_00
    assert won.closed_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(days=4)

    revenue = [m for m in messages if isinstance(m, events_pb2.RevenueRecognized)]
    assert [(m.kind, m.amount.minor_units) for m in revenue] == [
        (types_pb2.REVENUE_KIND_NEW, 10_500_00),
        (types_pb2.REVENUE_KIND_EXPANSION, 2_000_00),
        (types_pb2.REVENUE_KIND_CHURN, -12_500_00),
    ]
    assert len({m.revenue_id for m in revenue}) == 3

    lost = [m for m in messages if isinstance(m, events_pb2.DealLost)]
    assert [(m.loss_reason, m.reason) for m in lost] == [
        (types_pb2.LOSS_REASON_NO_DECISION, "went with a spreadsheet"),
        (types_pb2.LOSS_REASON_UNSPECIFIED, ""),
    ]


def test_the_lead_index_is_not_published() -> None:
    events = index_events()
    assert [type(e).__qualname__ for e in events] == [
        "LeadDeals.Started",
        "LeadDeals.DealAdded",
        "LeadDeals.DealAdded",
    ]
    for index_event in events:
        assert wire.to_message(index_event) is None


def test_unknown_events_and_messages_are_refused() -> None:
    class Stranger:
        originator_id = uuid.uuid4()

    with pytest.raises(TypeError):
        wire.to_message(Stranger())
    envelope = Envelope(
        event_id="x",
        event_type="closedloop.other.v1.Thing",
        source="/closedloop/other",
        subject=str(uuid.uuid4()),
        time=T0,
        sequence=1,
    )
    with pytest.raises(EnvelopeError):
        decode_payload(envelope.event_type, Timestamp().SerializeToString())


def test_deal_message_shows_state_exponent_and_revenue() -> None:
    deal = Deal.open(LEAD, "Acme", Money(1_500, "BHD"), None, T0)
    open_message = wire.deal_message(deal)
    assert open_message.stage == types_pb2.DEAL_STAGE_DISCOVERY
    assert open_message.currency_exponent == 3
    assert not open_message.HasField("expected_close_at")
    assert not open_message.HasField("closed_at")
    assert open_message.recognized_revenue.currency == "BHD"
    assert open_message.recognized_revenue.minor_units == 0
    assert open_message.version == 1

    deal.win(None, T0 + timedelta(days=1))
    deal.recognize_revenue(uuid.uuid4(), Money(1_500, "BHD"), "new", T0 + timedelta(2))
    deal.recognize_revenue(
        uuid.uuid4(), Money(-500, "BHD"), "contraction", T0 + timedelta(3)
    )
    won = wire.deal_message(deal)
    assert won.stage == types_pb2.DEAL_STAGE_WON
    assert won.closed_at.ToDatetime(tzinfo=UTC) == T0 + timedelta(days=1)
    assert [r.kind for r in won.revenues] == [
        types_pb2.REVENUE_KIND_NEW,
        types_pb2.REVENUE_KIND_CONTRACTION,
    ]
    assert won.recognized_revenue.minor_units == 1_000
    assert won.lead_id == str(LEAD)
    assert won.version == 4

    lost = Deal.open(LEAD, "Beta", Money(9, "JPY"), T0, T0)
    lost.lose("too expensive", "price", T0)
    lost_message = wire.deal_message(lost)
    assert lost_message.stage == types_pb2.DEAL_STAGE_LOST
    assert lost_message.loss_reason == types_pb2.LOSS_REASON_PRICE
    assert lost_message.loss_detail == "too expensive"
    assert lost_message.currency_exponent == 0
    assert lost_message.HasField("expected_close_at")
