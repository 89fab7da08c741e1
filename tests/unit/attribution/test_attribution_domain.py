"""The attribution aggregates and rules, with no store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from closedloop.errors import InvalidArgument
from closedloop.money import Money
from services.attribution.domain import (
    ChannelModel,
    ChannelWeight,
    ConversionCredits,
    DealOutcome,
    DealRecord,
    PersonJourney,
    Spend,
    SpendLedger,
    TrainedModel,
    WinSnapshot,
    check_credits,
)
from services.attribution.ids import (
    conversion_id,
    deal_record_id,
    lead_journey_id,
    spend_id_for,
    visitor_journey_id,
    visitor_key,
)
from services.attribution.models import Credit, Touch
from services.attribution.rules import (
    CHANNELS,
    check_channel,
    check_model,
    check_period,
    check_spend_amount,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def usd(minor_units: int) -> Money:
    return Money(minor_units, "USD")


def test_ids_are_derived_from_the_facts() -> None:
    deal_id = uuid.uuid4()
    assert conversion_id(deal_id, "won") == conversion_id(deal_id, "won")
    assert conversion_id(deal_id, "won") != conversion_id(deal_id, str(uuid.uuid4()))
    assert DealRecord(deal_id=deal_id, lead_id=uuid.uuid4()).id == deal_record_id(
        deal_id
    )
    lead_id = uuid.uuid4()
    assert PersonJourney.for_lead(lead_id).id == lead_journey_id(lead_id)
    key = visitor_key("cookie-1")
    assert PersonJourney.for_visitor(key).id == visitor_journey_id(key)
    assert visitor_key("cookie-1") != visitor_key("cookie-2")
    assert "cookie-1" not in str(key)  # the anonymous id itself is never kept
    assert Spend.record(
        "email", "", usd(1), T0, T0 + timedelta(days=1), T0, "k1"
    ).id == spend_id_for("k1")


def test_a_journey_records_each_touch_once_in_recording_order() -> None:
    journey = PersonJourney.for_lead(uuid.uuid4())
    assert journey.record_touch("a", "email", T0 + timedelta(days=2))
    assert journey.record_touch("b", "direct", T0)
    assert not journey.record_touch("a", "email", T0 + timedelta(days=2))
    assert [(t[2], t[1]) for t in journey.touches] == [("a", 0), ("b", 1)]
    assert journey.capture(T0)
    assert not journey.capture(T0 + timedelta(days=1))
    assert journey.captured_at == T0


def test_lifecycle_events_count_once_each() -> None:
    journey = PersonJourney.for_lead(uuid.uuid4())
    assert journey.disqualify(T0, "e1")
    assert not journey.disqualify(T0, "e1")
    assert journey.reopen(T0 + timedelta(days=1), "e2")
    assert journey.disqualified_at is None
    assert not journey.disqualify(T0, "e1")  # an old event redelivered late
    assert journey.disqualified_at is None
    merged = uuid.uuid4()
    assert journey.absorb(merged)
    assert not journey.absorb(merged)
    assert not journey.absorb(journey.ref)


def test_a_deal_is_opened_won_or_lost_once() -> None:
    deal = DealRecord(deal_id=uuid.uuid4(), lead_id=uuid.uuid4())
    assert deal.open(T0, usd(5))
    assert not deal.open(T0 + timedelta(days=1), usd(6))
    snapshot = WinSnapshot(usd(7), T0 + timedelta(days=3), T0, T0, ())
    assert deal.win(snapshot)
    assert not deal.win(snapshot)
    assert not deal.lose(T0 + timedelta(days=4))
    assert deal.outcome is DealOutcome.WON
    assert deal.closed_at == T0 + timedelta(days=3)
    lost = DealRecord(deal_id=uuid.uuid4(), lead_id=uuid.uuid4())
    assert lost.lose(T0)
    assert not lost.lose(T0)
    assert lost.outcome is DealOutcome.LOST


def test_a_snapshot_gives_the_conversion_of_the_win() -> None:
    touch = Touch("t", "email", None, T0, 0)
    snapshot = WinSnapshot(
        usd(100), T0 + timedelta(days=9), T0 + timedelta(days=5), T0, (touch,)
    )
    conversion = snapshot.conversion()
    assert conversion.amount_minor == 100
    assert conversion.converted_at == conversion.won_at == T0 + timedelta(days=9)
    assert conversion.opportunity_created_at == T0 + timedelta(days=5)
    assert conversion.lead_created_at == T0


def conversion(amount: int = 100) -> ConversionCredits:
    return ConversionCredits(
        deal_id=uuid.uuid4(),
        lead_id=uuid.uuid4(),
        conversion="won",
        kind="won",
        revenue_kind="",
        amount=usd(amount),
        occurred_at=T0,
    )


def test_a_conversion_is_credited_once_per_model_and_exactly() -> None:
    conversion_credits = conversion()
    lines = (
        Credit("a", "email", None, T0, 60),
        Credit("b", "direct", None, T0, 40),
    )
    assert conversion_credits.attribute(
        "linear", "linear(lookback=7776000s)", lines, ""
    )
    assert not conversion_credits.attribute(
        "linear", "linear(lookback=7776000s)", lines, ""
    )
    assert conversion_credits.revenue_id == ""
    with pytest.raises(ValueError, match="sum to 99"):
        conversion_credits.attribute(
            "first_touch", "k", (Credit("a", "email", None, T0, 99),), ""
        )
    assert set(conversion_credits.credited) == {"linear"}


def test_check_credits_refuses_no_credits() -> None:
    with pytest.raises(ValueError, match="credits sum to 0"):
        check_credits(0, ())


def test_a_revenue_conversion_names_its_revenue() -> None:
    revenue_id = str(uuid.uuid4())
    conversion_credits = ConversionCredits(
        deal_id=uuid.uuid4(),
        lead_id=uuid.uuid4(),
        conversion=revenue_id,
        kind="revenue_recognized",
        revenue_kind="renewal",
        amount=usd(10),
        occurred_at=T0,
    )
    assert conversion_credits.revenue_id == revenue_id


def test_a_channel_model_keeps_the_latest_training() -> None:
    model = ChannelModel("markov")
    first = TrainedModel(
        "markov", "markov(k)", 3, 1, 0.5, (ChannelWeight("email", 1, 1, 1, 0),), T0
    )
    model.train(first)
    second = TrainedModel("markov", "markov(k)", 4, 2, 0.5, (), T0)
    model.train(second)
    assert model.latest == second
    assert model.trainings == 2
    assert first.weights == {"email": 1}
    with pytest.raises(ValueError, match="does not train"):
        model.train(TrainedModel("shapley", "shapley(k)", 1, 1, 1, (), T0))


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, True),
        (T0 + timedelta(days=31), None, False),  # the spend ends before it
        (T0 + timedelta(days=30), None, True),
        (None, T0, False),  # [start, end): ends where the spend starts
        (None, T0 + timedelta(seconds=1), True),
    ],
)
def test_spend_periods_overlap_half_open(
    start: datetime | None, end: datetime | None, expected: bool
) -> None:
    spend = Spend.record("display", "", usd(1), T0, T0 + timedelta(days=31), T0, "key")
    assert spend.overlaps(start, end) is expected


def test_a_ledger_lists_each_spend_once() -> None:
    ledger = SpendLedger("email")
    spend_id = uuid.uuid4()
    ledger.add(spend_id)
    ledger.add(spend_id)
    assert ledger.spend_ids == [spend_id]


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (lambda: check_model("model", ""), "model"),
        (lambda: check_model("model", "u_shaped"), "model"),
        (lambda: check_model("model", "linear", ("markov", "shapley")), "model"),
        (lambda: check_channel("channel", " "), "channel"),
        (lambda: check_channel("channel", "tv"), "channel"),
        (lambda: check_spend_amount("amount", usd(-1)), "amount.minor_units"),
        (lambda: check_spend_amount("amount", Money(1, "XYZ")), "amount.currency"),
        (lambda: check_period(T0, T0), "period_end"),
        (lambda: check_period(T0, T0 - timedelta(days=1)), "period_end"),
    ],
)
def test_rules_name_the_field(check: object, field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check()  # type: ignore[operator]
    assert refused.value.field == field


def test_checks_normalise() -> None:
    assert check_model("model", " linear ") == "linear"
    assert check_channel("channel", " Paid_Search ") == "paid_search"
    assert check_spend_amount("amount", Money(0, "jpy")) == Money(0, "JPY")
    assert len(CHANNELS) == len(set(CHANNELS)) == 16
