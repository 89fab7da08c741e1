"""The deal aggregate on its own: stages, amounts, outcome, revenue and their rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from closedloop.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from closedloop.money import CURRENCIES, Money, check_currency
from services.deal.domain import (
    Deal,
    DealStage,
    LeadDeals,
    LeadStanding,
    check_convertible,
    deal_id_for,
    lead_deals_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable

T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
LEAD = uuid.UUID("0e8f5a52-4a0b-4d53-9b0e-1f6c2b7d9a10")


def usd(minor_units: int) -> Money:
    return Money(minor_units, "USD")


def new_deal(
    amount: Money | None = None, occurred_at: datetime = T0, key: str = ""
) -> Deal:
    return Deal.open(
        lead_id=LEAD,
        name="Acme renewal for Ana",
        amount=amount or usd(1_000_00),
        expected_close_at=T0 + timedelta(days=30),
        occurred_at=occurred_at,
        idempotency_key=key,
    )


def won_deal(closed_at: datetime = T0 + timedelta(days=10)) -> Deal:
    deal = new_deal()
    deal.win(None, closed_at)
    return deal


def lost_deal() -> Deal:
    deal = new_deal()
    deal.lose("went with a spreadsheet", "no_decision", T0 + timedelta(days=5))
    return deal


def event_names(deal: Deal) -> list[str]:
    return [type(e).__qualname__ for e in deal.pending_events]


def refused(
    deal: Deal, command: Callable[[], Any], error: type[DomainError]
) -> DomainError:
    """The command raises `error` and records nothing."""
    version = deal.version
    pending = len(deal.pending_events)
    with pytest.raises(error) as raised:
        command()
    assert deal.version == version
    assert len(deal.pending_events) == pending
    return raised.value


# -- opening ------------------------------------------------------------------------


def test_a_deal_opens_in_discovery_with_its_business_time() -> None:
    last_year = T0 - timedelta(days=365)
    before = datetime.now(UTC)
    deal = new_deal(occurred_at=last_year)
    after = datetime.now(UTC)

    assert deal.lead_id == LEAD
    assert deal.name == "Acme renewal for Ana"
    assert deal.amount == usd(1_000_00)
    assert deal.stage is DealStage.DISCOVERY
    assert deal.created_at == last_year
    assert deal.stage_changed_at == last_year
    assert deal.expected_close_at == T0 + timedelta(days=30)
    assert deal.closed_at is None
    assert not deal.is_closed
    (opened,) = deal.pending_events
    assert isinstance(opened, Deal.Opened)
    assert opened.occurred_at == last_year  # business time
    assert before <= opened.timestamp <= after  # recorded time
    assert opened.lead_id == LEAD


def test_an_idempotency_key_gives_the_same_deal_id_for_the_same_lead() -> None:
    first = new_deal(key="crm-42")
    again = new_deal(key="crm-42")
    other_key = new_deal(key="crm-43")
    no_key = [new_deal(), new_deal()]

    assert first.id == again.id == deal_id_for(LEAD, "crm-42")
    assert other_key.id != first.id
    assert no_key[0].id != no_key[1].id
    other_lead = Deal.open(uuid.uuid4(), "x", usd(1), None, T0, "crm-42")
    assert other_lead.id != first.id


def test_currency_codes_are_normalised_and_checked() -> None:
    assert new_deal(Money(500, " eur ")).amount == Money(500, "EUR")
    for bad in ("", "US", "USDX", "ABC", "XXX", "12$"):
        with pytest.raises(InvalidArgument) as raised:
            new_deal(Money(500, bad))
        assert raised.value.field == "amount.currency"


def test_deal_amounts_are_never_negative() -> None:
    with pytest.raises(InvalidArgument) as raised:
        new_deal(usd(-1))
    assert raised.value.field == "amount.minor_units"
    assert new_deal(usd(0)).amount == usd(0)


# -- stages ---------------------------------------------------------------------------


def test_stages_move_forwards_and_backwards_in_business_time() -> None:
    deal = new_deal()
    for n, stage in enumerate(
        ["qualification", "proposal", "negotiation", "qualification"], start=1
    ):
        assert deal.change_stage(stage, T0 + timedelta(days=n)) is True
        assert deal.stage == stage
        assert deal.stage_changed_at == T0 + timedelta(days=n)

    changes = [e for e in deal.pending_events if isinstance(e, Deal.StageChanged)]
    assert [(e.previous_stage, e.stage) for e in changes] == [
        ("discovery", "qualification"),
        ("qualification", "proposal"),
        ("proposal", "negotiation"),
        ("negotiation", "qualification"),
    ]
    assert all(e.lead_id == LEAD for e in changes)


def test_changing_to_the_current_stage_records_nothing() -> None:
    deal = new_deal()
    assert deal.change_stage("discovery", T0 + timedelta(days=1)) is False
    assert event_names(deal) == ["Deal.Opened"]
    assert deal.stage_changed_at == T0


@pytest.mark.parametrize("stage", ["won", "lost", "closed", ""])
def test_won_and_lost_are_not_reached_by_a_stage_change(stage: str) -> None:
    deal = new_deal()
    error = refused(deal, lambda: deal.change_stage(stage, T0), InvalidArgument)
    assert isinstance(error, InvalidArgument)
    assert error.field == "stage"
    assert deal.stage is DealStage.DISCOVERY


def test_commands_dated_before_the_opening_are_refused() -> None:
    deal = new_deal()
    earlier = T0 - timedelta(seconds=1)
    refused(deal, lambda: deal.change_stage("proposal", earlier), FailedPrecondition)
    refused(deal, lambda: deal.update_amount(usd(5), earlier), FailedPrecondition)
    refused(deal, lambda: deal.lose("", "", earlier), FailedPrecondition)
    error = refused(deal, lambda: deal.win(None, earlier), FailedPrecondition)
    assert "closed_at" in error.message
    deal.win(None, T0)  # the same instant is fine
    assert deal.closed_at == T0


# -- amounts ---------------------------------------------------------------------------


def test_the_amount_of_an_open_deal_changes_in_its_currency() -> None:
    deal = new_deal()
    assert deal.update_amount(usd(1_500_00), T0 + timedelta(days=1)) is True
    assert deal.update_amount(usd(1_500_00), T0 + timedelta(days=2)) is False
    assert deal.amount == usd(1_500_00)
    (updated,) = [e for e in deal.pending_events if isinstance(e, Deal.AmountUpdated)]
    assert updated.previous_amount == usd(1_000_00)
    assert updated.amount == usd(1_500_00)

    error = refused(
        deal,
        lambda: deal.update_amount(Money(1_500_00, "EUR"), T0),
        FailedPrecondition,
    )
    assert "never changes" in error.message
    assert error.message.startswith("amount.currency: ")
    error = refused(deal, lambda: deal.update_amount(usd(-5), T0), InvalidArgument)
    assert isinstance(error, InvalidArgument)
    assert error.field == "amount.minor_units"
    assert deal.amount == usd(1_500_00)


# -- won and lost, once ----------------------------------------------------------------


def test_winning_at_the_current_or_a_given_amount() -> None:
    at_current = won_deal()
    assert at_current.stage is DealStage.WON
    assert at_current.amount == usd(1_000_00)
    assert at_current.closed_at == T0 + timedelta(days=10)
    assert at_current.stage_changed_at == T0 + timedelta(days=10)

    negotiated = new_deal()
    negotiated.win(usd(900_00), T0 + timedelta(days=3))
    (won,) = [e for e in negotiated.pending_events if isinstance(e, Deal.Won)]
    assert won.amount == usd(900_00)
    assert won.closed_at == T0 + timedelta(days=3)
    assert won.lead_id == LEAD
    assert negotiated.amount == usd(900_00)


def test_a_win_in_another_currency_or_negative_is_refused() -> None:
    deal = new_deal()
    refused(deal, lambda: deal.win(Money(900_00, "EUR"), T0), FailedPrecondition)
    refused(deal, lambda: deal.win(usd(-1), T0), InvalidArgument)
    refused(deal, lambda: deal.win(Money(1, "ZZZ"), T0), InvalidArgument)
    assert deal.stage is DealStage.DISCOVERY


@pytest.mark.parametrize("make", [won_deal, lost_deal], ids=["won", "lost"])
def test_a_closed_deal_takes_no_more_changes(make: Callable[[], Deal]) -> None:
    deal = make()
    later = T0 + timedelta(days=20)
    commands: list[Callable[[], Any]] = [
        lambda: deal.change_stage("negotiation", later),
        lambda: deal.update_amount(usd(2_000_00), later),
        lambda: deal.win(None, later),
        lambda: deal.win(usd(2_000_00), later),
        lambda: deal.lose("changed their mind", "timing", later),
    ]
    for command in commands:
        error = refused(deal, command, FailedPrecondition)
        assert str(deal.stage) in error.message


def test_losing_keeps_the_reason_and_its_business_time() -> None:
    deal = lost_deal()
    assert deal.stage is DealStage.LOST
    assert deal.loss_reason == "no_decision"
    assert deal.loss_detail == "went with a spreadsheet"
    assert deal.closed_at == T0 + timedelta(days=5)
    lost = deal.pending_events[-1]
    assert isinstance(lost, Deal.Lost)
    assert (lost.reason, lost.loss_reason, lost.lead_id) == (
        "went with a spreadsheet",
        "no_decision",
        LEAD,
    )
    without_category = new_deal()
    without_category.lose("", "", T0)
    assert without_category.loss_reason == ""
    unknown = new_deal()
    refused(unknown, lambda: unknown.lose("", "bad_luck", T0), InvalidArgument)


# -- revenue ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [new_deal, lost_deal], ids=["open", "lost"])
def test_revenue_only_for_won_deals(make: Callable[[], Deal]) -> None:
    deal = make()
    error = refused(
        deal,
        lambda: deal.recognize_revenue(uuid.uuid4(), usd(100), "new", T0),
        FailedPrecondition,
    )
    assert "won" in error.message
    assert deal.revenues == []


@pytest.mark.parametrize(
    ("kind", "minor_units", "allowed"),
    [
        ("new", 100, True),
        ("renewal", 100, True),
        ("expansion", 100, True),
        ("new", 0, False),
        ("renewal", -100, False),
        ("expansion", 0, False),
        ("contraction", -100, True),
        ("churn", -100, True),
        ("contraction", 0, False),
        ("contraction", 100, False),
        ("churn", 0, False),
        ("churn", 100, False),
    ],
)
def test_revenue_sign_follows_its_kind(
    kind: str, minor_units: int, allowed: bool
) -> None:
    deal = won_deal()
    later = T0 + timedelta(days=40)
    if allowed:
        revenue_id, created = deal.recognize_revenue(
            uuid.uuid4(), usd(minor_units), kind, later
        )
        assert created is True
        assert [r.revenue_id for r in deal.revenues] == [revenue_id]
        assert deal.revenues[0].amount == usd(minor_units)
        assert deal.revenues[0].kind == kind
    else:
        error = refused(
            deal,
            lambda: deal.recognize_revenue(uuid.uuid4(), usd(minor_units), kind, later),
            InvalidArgument,
        )
        assert isinstance(error, InvalidArgument)
        assert error.field == "amount.minor_units"


def test_revenue_keeps_the_deals_currency_and_comes_after_the_win() -> None:
    closed_at = T0 + timedelta(days=10)
    deal = won_deal(closed_at)
    error = refused(
        deal,
        lambda: deal.recognize_revenue(
            uuid.uuid4(), Money(100, "EUR"), "renewal", closed_at
        ),
        FailedPrecondition,
    )
    assert error.message.startswith("amount.currency: ")
    error = refused(
        deal,
        lambda: deal.recognize_revenue(
            uuid.uuid4(), usd(100), "new", closed_at - timedelta(days=1)
        ),
        FailedPrecondition,
    )
    assert error.message.startswith("recognized_at: ")
    refused(
        deal,
        lambda: deal.recognize_revenue(uuid.uuid4(), usd(100), "refund", closed_at),
        InvalidArgument,
    )
    assert deal.recognize_revenue(uuid.uuid4(), usd(100), "new", closed_at)[1]


def test_revenue_over_time_and_its_idempotency_key() -> None:
    deal = won_deal()
    year = timedelta(days=365)
    first_id = uuid.uuid4()
    assert deal.recognize_revenue(first_id, usd(1_000_00), "new", T0 + year / 2, "a")
    assert deal.recognize_revenue(
        uuid.uuid4(), usd(1_100_00), "renewal", T0 + year, "b"
    )[1]
    assert deal.recognize_revenue(
        uuid.uuid4(), usd(-300_00), "contraction", T0 + year * 1.5, "c"
    )[1]
    assert deal.recognize_revenue(
        uuid.uuid4(), usd(-800_00), "churn", T0 + year * 2, "d"
    )[1]

    again = deal.recognize_revenue(uuid.uuid4(), usd(5), "expansion", T0, "a")

    assert again == (first_id, False)
    assert [r.kind for r in deal.revenues] == ["new", "renewal", "contraction", "churn"]
    assert deal.recognized_revenue == usd(1_000_00)
    recognized = [
        e for e in deal.pending_events if isinstance(e, Deal.RevenueRecognized)
    ]
    assert len(recognized) == 4
    assert recognized[0].recognized_at == T0 + year / 2
    assert all(e.lead_id == LEAD for e in recognized)


# -- erasure and the index -------------------------------------------------------------


def test_erasure_forgets_personal_fields_and_is_recorded_once() -> None:
    deal = lost_deal()
    assert deal.erase_personal_data(T0 + timedelta(days=50)) is True
    assert deal.erase_personal_data(T0 + timedelta(days=51)) is False
    assert (deal.name, deal.loss_detail) == ("", "")
    assert deal.personal_data_erased is True
    assert deal.loss_reason == "no_decision"  # a category, not personal
    assert deal.amount == usd(1_000_00)
    assert event_names(deal)[-1] == "Deal.PersonalDataErased"
    assert event_names(deal).count("Deal.PersonalDataErased") == 1


def test_the_lead_index_holds_each_deal_once() -> None:
    index = LeadDeals(LEAD)
    first, second = uuid.uuid4(), uuid.uuid4()
    index.add(first)
    index.add(second)
    index.add(first)
    assert index.id == lead_deals_id(LEAD)
    assert index.deal_ids == [first, second]
    assert len(index.pending_events) == 3


def test_replaying_the_events_rebuilds_the_same_deal() -> None:
    deal = won_deal()
    deal.recognize_revenue(uuid.uuid4(), usd(10_00), "expansion", T0 + timedelta(40))
    rebuilt: Any = None
    for domain_event in deal.collect_events():
        rebuilt = domain_event.mutate(rebuilt)
    assert vars(rebuilt) == vars(deal)


# -- may a deal be opened for this lead ------------------------------------------------


@pytest.mark.parametrize(
    "stage", ["lead", "mql", "sal", "opportunity", "customer"], ids=str
)
def test_active_leads_may_have_deals(stage: str) -> None:
    check_convertible(LEAD, LeadStanding(LEAD, stage))


def test_unknown_disqualified_and_merged_leads_may_not() -> None:
    with pytest.raises(NotFound, match=str(LEAD)):
        check_convertible(LEAD, None)
    with pytest.raises(FailedPrecondition, match="disqualified"):
        check_convertible(LEAD, LeadStanding(LEAD, "disqualified"))
    survivor = uuid.uuid4()
    with pytest.raises(FailedPrecondition, match=str(survivor)):
        check_convertible(LEAD, LeadStanding(LEAD, "merged", merged_into=survivor))


# -- money -----------------------------------------------------------------------------


def test_money_keeps_the_currencys_exponent() -> None:
    assert Money(1_000, "JPY").exponent == 0
    assert Money(1_000, "USD").exponent == 2
    assert Money(1_000, "BHD").exponent == 3
    assert Money(123_456, "USD").to_decimal() == Decimal("1234.56")
    assert str(Money(1_000, "JPY")) == "1000 JPY"
    assert str(Money(1_005, "BHD")) == "1.005 BHD"
    assert str(Money(-250, "USD")) == "-2.50 USD"
    assert Money(5, "USD") + Money(7, "USD") == Money(12, "USD")
    with pytest.raises(ValueError, match="cannot add"):
        _ = Money(5, "USD") + Money(5, "EUR")


def test_currency_table() -> None:
    assert {"USD", "EUR", "JPY", "BHD", "CHF"} <= CURRENCIES
    assert "XXX" not in CURRENCIES
    assert check_currency("amount.currency", "chf") == "CHF"
    with pytest.raises(InvalidArgument, match=r"^amount\.currency: is required"):
        check_currency("amount.currency", " ")


def test_a_loss_after_erasure_keeps_no_personal_text() -> None:
    deal = new_deal()
    deal.erase_personal_data(T0)
    deal.lose("Ana Lima's manager said no", "other", T0 + timedelta(days=1))
    assert deal.loss_detail == ""
    assert deal.loss_reason == "other"
