"""Attribution's domain events and views mapped to closedloop.attribution.v1."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from closedloop.attribution.v1 import events_pb2
from closedloop.bus.cloudevents import decode_payload
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.money import Money
from closedloop.protobuf import to_datetime
from services.attribution.domain import (
    ChannelModel,
    ChannelWeight,
    ConversionCredits,
    ConversionKind,
    DealRecord,
    ModelCredits,
    PersonJourney,
    Spend,
    SpendLedger,
    TrainedModel,
    WinSnapshot,
)
from services.attribution.models import UNATTRIBUTED, Credit
from services.attribution.rules import CHANNELS
from services.attribution.views import ConversionView, DealAttributionView
from services.attribution.wire import (
    channel_model_message,
    deal_attribution_message,
    spend_message,
    to_message,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
LINES = (
    Credit("tp-1", "paid_search", "brand", T0, 600),
    Credit("tp-2", "direct", None, T0 + timedelta(days=1), 400),
)


def roundtrip(message: Any) -> Any:
    """What a subscriber decodes from the stream."""
    return decode_payload(message.DESCRIPTOR.full_name, message.SerializeToString())


def test_channels_are_the_lead_contexts_channel_names() -> None:
    names = [
        name.removeprefix("CHANNEL_").lower()
        for name in lead_types.Channel.keys()  # noqa: SIM118 - protobuf enum API
        if name != "CHANNEL_UNSPECIFIED"
    ]
    assert sorted(CHANNELS) == sorted(names)


def test_an_attribution_is_published_as_revenue_attributed() -> None:
    deal_id, lead_id = uuid.uuid4(), uuid.uuid4()
    conversion_credits = ConversionCredits(
        deal_id=deal_id,
        lead_id=lead_id,
        conversion="won",
        kind="won",
        revenue_kind="",
        amount=Money(1000, "USD"),
        occurred_at=T0,
    )
    conversion_credits.attribute(
        "markov", "markov(lookback=7776000s,order=1)", LINES, "linear"
    )
    started, attributed = conversion_credits.collect_events()
    assert to_message(started) is None
    message = roundtrip(to_message(attributed))
    assert isinstance(message, events_pb2.RevenueAttributed)
    assert message.deal_id == str(deal_id)
    assert message.lead_id == str(lead_id)
    assert message.model == "markov"
    assert message.model_key == "markov(lookback=7776000s,order=1)"
    assert message.conversion_kind == events_pb2.CONVERSION_KIND_WON
    assert message.revenue_id == ""
    assert message.fallback == "linear"
    assert (message.amount.minor_units, message.amount.currency) == (1000, "USD")
    assert to_datetime(message.occurred_at) == T0
    assert [
        (c.touchpoint_id, c.channel, c.campaign, c.amount.minor_units)
        for c in message.credits
    ] == [("tp-1", "paid_search", "brand", 600), ("tp-2", "direct", "", 400)]
    assert {c.amount.currency for c in message.credits} == {"USD"}
    assert to_datetime(message.credits[1].touch_occurred_at) == T0 + timedelta(days=1)


def test_an_unattributed_credit_has_no_touch() -> None:
    conversion_credits = ConversionCredits(
        deal_id=uuid.uuid4(),
        lead_id=uuid.uuid4(),
        conversion="rev-1",
        kind="revenue_recognized",
        revenue_kind="churn",
        amount=Money(-500, "JPY"),
        occurred_at=T0,
    )
    conversion_credits.attribute(
        "linear", "k", (Credit(None, UNATTRIBUTED, None, None, -500),), ""
    )
    message = roundtrip(to_message(conversion_credits.collect_events()[1]))
    assert message.conversion_kind == events_pb2.CONVERSION_KIND_REVENUE_RECOGNIZED
    assert (message.revenue_id, message.revenue_kind) == ("rev-1", "churn")
    (row,) = message.credits
    assert (row.touchpoint_id, row.channel, row.amount.minor_units) == (
        "",
        UNATTRIBUTED,
        -500,
    )
    assert not row.HasField("touch_occurred_at")


TRAINED = TrainedModel(
    model="shapley",
    model_key="shapley(lookback=7776000s,order=1,samples=2000,seed=0)",
    journeys=6,
    converting_journeys=2,
    probability=1 / 3,
    channels=(
        ChannelWeight("direct", 0.9167, 0.4583, 0.9167, 733.33),
        ChannelWeight("email", 0.5, 0.25, 0.5, 400.0, 0.01),
    ),
    trained_at=T0,
    standard_error=0.01,
    value_currency="USD",
)


def test_a_training_is_published_as_channel_model_trained() -> None:
    model = ChannelModel("shapley")
    model.train(TRAINED)
    started, trained = model.collect_events()
    assert to_message(started) is None
    message = roundtrip(to_message(trained))
    assert isinstance(message, events_pb2.ChannelModelTrained)
    assert message.model == "shapley"
    assert message.model_key == TRAINED.model_key
    assert (message.journeys, message.converting_journeys) == (6, 2)
    assert message.conversion_probability == pytest.approx(1 / 3)
    assert message.value_currency == "USD"
    assert message.standard_error == pytest.approx(0.01)
    assert [(c.channel, c.weight, c.value) for c in message.channels] == [
        ("direct", 0.9167, 733.33),
        ("email", 0.5, 400.0),
    ]
    assert message.channels[1].standard_error == pytest.approx(0.01)
    assert to_datetime(message.trained_at) == T0
    api = channel_model_message(TRAINED)
    assert list(api.channels) == list(message.channels)


def test_spend_is_published_as_spend_recorded() -> None:
    spend = Spend.record(
        "paid_social",
        "launch",
        Money(90_000, "EUR"),
        T0,
        T0 + timedelta(days=30),
        T0 + timedelta(days=31),
        "invoice-7",
    )
    (recorded,) = spend.collect_events()
    message = roundtrip(to_message(recorded))
    assert isinstance(message, events_pb2.SpendRecorded)
    assert message.spend_id == str(spend.id)
    assert (message.channel, message.campaign) == ("paid_social", "launch")
    assert (message.amount.minor_units, message.amount.currency) == (90_000, "EUR")
    assert to_datetime(message.period_start) == T0
    assert to_datetime(message.period_end) == T0 + timedelta(days=30)
    assert to_datetime(message.occurred_at) == T0 + timedelta(days=31)
    api = spend_message(spend)
    assert (api.spend_id, api.channel, api.amount) == (
        message.spend_id,
        message.channel,
        message.amount,
    )


def test_bookkeeping_is_not_published() -> None:
    journey = PersonJourney.for_lead(uuid.uuid4())
    journey.record_touch("t", "email", T0)
    journey.capture(T0)
    journey.link_visitor(uuid.uuid4())
    journey.absorb(uuid.uuid4())
    journey.disqualify(T0, "e1")
    journey.reopen(T0, "e2")
    deal = DealRecord(deal_id=uuid.uuid4(), lead_id=uuid.uuid4())
    deal.open(T0, Money(1, "USD"))
    deal.win(WinSnapshot(Money(1, "USD"), T0, T0, T0, ()))
    deal.add_conversion("won")
    ledger = SpendLedger("email")
    ledger.add(uuid.uuid4())
    events = [
        *journey.collect_events(),
        *deal.collect_events(),
        *ledger.collect_events(),
    ]
    assert len(events) == 13
    assert [to_message(e) for e in events] == [None] * 13


def test_an_event_without_a_mapping_is_an_error() -> None:
    with pytest.raises(TypeError, match="no wire mapping"):
        to_message(object())


def test_a_deal_attribution_view_maps_to_the_api() -> None:
    deal_id, lead_id = uuid.uuid4(), uuid.uuid4()
    credited = ModelCredits("linear", "linear(lookback=7776000s)", LINES, "")
    view = DealAttributionView(
        deal_id=deal_id,
        lead_id=lead_id,
        model="linear",
        model_key=credited.model_key,
        revenue=Money(1000, "USD"),
        credits=LINES,
        fallback="",
        won_amount=Money(1000, "USD"),
        won_at=T0,
        conversions=(
            ConversionView(
                deal_id,
                lead_id,
                ConversionKind.WON,
                "",
                "",
                Money(1000, "USD"),
                T0,
                credited,
            ),
        ),
    )
    message = deal_attribution_message(view)
    assert message.deal_id == str(deal_id)
    assert message.revenue.minor_units == 1000
    assert [c.amount.minor_units for c in message.credits] == [600, 400]
    assert to_datetime(message.won_at) == T0
    (conversion,) = message.conversions
    assert conversion.model == "linear"
    assert conversion.conversion_kind == events_pb2.CONVERSION_KIND_WON
