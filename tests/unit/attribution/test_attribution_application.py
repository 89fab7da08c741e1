"""The attribution application over eventsourcing's in-process store, no servers.

The lead context is a fake of the LeadJourneys port. Deal and lead events are fed
in through the application's methods, as the subscriptions call them.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from closedloop.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from closedloop.eventstore.metadata import EventMeta
from closedloop.eventstore.unit_of_work import CommandExecutor
from closedloop.money import Money
from services.attribution.application import Attributions
from services.attribution.datadriven import Journey, markov, shapley
from services.attribution.domain import ConversionCredits
from services.attribution.facts import (
    DealWonFact,
    RecordSpend,
    RevenueFact,
    SpendFilter,
    TouchFact,
)
from services.attribution.ids import conversion_id
from services.attribution.lead_journeys import LeadJourney, LeadJourneys
from services.attribution.models import UNATTRIBUTED, ModelSpec, Touch
from services.attribution.rules import DATA_DRIVEN_MODELS, HEURISTIC_MODELS, MODELS
from services.attribution.schedule import TrainingSchedule
from services.attribution.settings import AttributionSettings
from services.attribution.store import AttributionStore
from services.attribution.views import spend_totals

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DAY = timedelta(days=1)


def at(day: float, month: int = 3) -> datetime:
    """Noon UTC on a day of 2026."""
    return datetime(2026, month, 1, 12, tzinfo=UTC) + (day - 1) * DAY


LEAD_CREATED = at(22)
OPENED = at(29)
WON_AT = at(31)
START = at(1)


def usd(minor_units: int) -> Money:
    return Money(minor_units, "USD")


# The worked example of DOMAIN.md 4.4: T3 is the last touch before lead creation,
# T4 the last before the opportunity was opened and before the win.
EXAMPLE_TOUCHES = (
    Touch("T1", "paid_social", "spring", at(1), 0),
    Touch("T2", "organic_search", None, at(9), 1),
    Touch("T3", "paid_search", "brand", at(20), 2),
    Touch("T4", "direct", None, at(27), 3),
)
EXAMPLE_TABLE = {
    "first_touch": ["1000.00", "0", "0", "0"],
    "last_touch": ["0", "0", "0", "1000.00"],
    "last_non_direct": ["0", "0", "1000.00", "0"],
    "linear": ["250.00", "250.00", "250.00", "250.00"],
    "time_decay": ["43.68", "96.44", "286.63", "573.25"],
    "position_based": ["400.00", "100.00", "100.00", "400.00"],
    "w_shaped": ["300.00", "100.00", "300.00", "300.00"],
    "full_path": ["225.00", "100.00", "225.00", "450.00"],
}


class FakeLeadJourneys(LeadJourneys):
    """Journeys as the lead context would give them; `down` plays an outage."""

    def __init__(self) -> None:
        self.journeys: dict[uuid.UUID, LeadJourney] = {}
        self.down = False
        self.asked: list[uuid.UUID] = []

    def add(
        self, touches: tuple[Touch, ...], created_at: datetime = LEAD_CREATED
    ) -> uuid.UUID:
        lead_id = uuid.uuid4()
        self.journeys[lead_id] = LeadJourney(lead_id, created_at, touches)
        return lead_id

    async def journey(
        self, lead_id: uuid.UUID, meta: EventMeta | None = None
    ) -> LeadJourney | None:
        self.asked.append(lead_id)
        if self.down:
            raise Unavailable("the lead service did not give the lead's journey; retry")
        return self.journeys.get(lead_id)


@pytest.fixture
def leads() -> FakeLeadJourneys:
    return FakeLeadJourneys()


@pytest.fixture
async def app(leads: FakeLeadJourneys) -> AsyncIterator[Attributions]:
    store = AttributionStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    executor = CommandExecutor(store)
    yield Attributions(store, executor, lead_journeys=leads)
    await executor.close()
    store.close()


def meta() -> EventMeta:
    return EventMeta.new()


def notifications(app: Attributions) -> int:
    return app.store.recorder.max_notification_id() or 0


def published(app: Attributions) -> list[Any]:
    """The stored events the relay would publish as RevenueAttributed."""
    events = [
        app.store.mapper.to_domain_event(n)
        for n in app.store.recorder.select_notifications(1, 100_000)
    ]
    return [e for e in events if isinstance(e, ConversionCredits.Attributed)]


async def open_and_win(
    app: Attributions,
    lead_id: uuid.UUID,
    *,
    amount: int = 100_000,
    opened_at: datetime = OPENED,
    closed_at: datetime = WON_AT,
) -> DealWonFact:
    deal_id = uuid.uuid4()
    await app.record_deal_opened(deal_id, lead_id, usd(amount), opened_at, meta())
    won = DealWonFact(deal_id, lead_id, usd(amount), closed_at)
    assert await app.attribute_win(won, meta()) is True
    return won


def amounts(lines: Any) -> list[int]:
    return [c.amount_minor for c in lines]


# -- crediting a win ------------------------------------------------------------------


async def test_a_win_is_credited_under_every_model_to_the_cent(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lead_id = leads.add(EXAMPLE_TOUCHES)
    won = await open_and_win(app, lead_id)

    events = published(app)
    assert [e.model for e in events] == list(MODELS)
    for e in events:
        assert sum(c.amount_minor for c in e.credit_lines) == 100_000, e.model
        assert [c.touchpoint_id for c in e.credit_lines] == ["T1", "T2", "T3", "T4"]
        assert e.deal_id == won.deal_id
        assert e.lead_id == lead_id
        assert e.kind == "won"
        assert e.occurred_at == at(31)
    by_model = {e.model: e for e in events}
    for model, column in EXAMPLE_TABLE.items():
        expected = [int(Decimal(v) * 100) for v in column]
        assert amounts(by_model[model].credit_lines) == expected, model
        assert by_model[model].fallback == ""
    assert by_model["linear"].credit_lines[0].campaign == "spring"
    assert by_model["time_decay"].model_key == (
        "time_decay(lookback=7776000s,half_life=604800s)"
    )
    # Before any training the data-driven models fall back to linear, and say so.
    for model in DATA_DRIVEN_MODELS:
        assert by_model[model].fallback == "linear"
        assert amounts(by_model[model].credit_lines) == [25_000] * 4


async def test_a_redelivered_win_credits_once(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lead_id = leads.add(EXAMPLE_TOUCHES)
    won = await open_and_win(app, lead_id)
    before = notifications(app)

    assert await app.attribute_win(won, meta()) is False
    assert await app.attribute_win(won, meta()) is False

    assert notifications(app) == before
    assert len(published(app)) == len(MODELS)
    assert leads.asked == [lead_id]  # the repeat did not even ask the lead service


async def test_lead_service_away_sends_the_win_back_and_records_nothing(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lead_id = leads.add(EXAMPLE_TOUCHES)
    deal_id = uuid.uuid4()
    await app.record_deal_opened(deal_id, lead_id, usd(100_000), at(29), meta())
    before = notifications(app)
    leads.down = True
    won = DealWonFact(deal_id, lead_id, usd(100_000), at(31))
    with pytest.raises(Unavailable):
        await app.attribute_win(won, meta())
    assert notifications(app) == before

    leads.down = False  # the redelivery finds it back
    assert await app.attribute_win(won, meta()) is True
    assert len(published(app)) == len(MODELS)


async def test_a_win_before_its_opening_is_sent_back(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lead_id = leads.add(EXAMPLE_TOUCHES)
    won = DealWonFact(uuid.uuid4(), lead_id, usd(5), at(31))
    with pytest.raises(Unavailable, match="DealOpened"):
        await app.attribute_win(won, meta())
    assert notifications(app) == 0
    assert leads.asked == []


async def test_a_lead_unknown_to_the_lead_context_is_unattributed(
    app: Attributions,
) -> None:
    won = await open_and_win(app, uuid.uuid4(), amount=77_777)
    for e in published(app):
        assert [
            (c.touchpoint_id, c.channel, c.amount_minor) for c in e.credit_lines
        ] == [(None, UNATTRIBUTED, 77_777)]
        assert e.fallback == ""
    view = app.deal_attribution(won.deal_id, "w_shaped")
    assert view.credits[0].channel == UNATTRIBUTED
    assert view.revenue == usd(77_777)


async def test_touches_outside_the_journey_are_not_credited(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lookback_edge = at(22) - timedelta(days=90)
    touches = (
        Touch("too-early", "email", None, lookback_edge - timedelta(seconds=1), 0),
        Touch("edge", "display", None, lookback_edge, 1),
        *EXAMPLE_TOUCHES,
        Touch("after-win", "email", None, at(31) + timedelta(seconds=1), 9),
    )
    lead_id = leads.add(touches)
    won = await open_and_win(app, lead_id)
    view = app.deal_attribution(won.deal_id, "linear")
    assert [c.touchpoint_id for c in view.credits] == ["edge", "T1", "T2", "T3", "T4"]
    assert amounts(view.credits) == [20_000] * 5


async def test_one_touch_takes_everything_under_every_model(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lead_id = leads.add((Touch("only", "events", "summit", at(2), 0),))
    await open_and_win(app, lead_id, amount=123_45)
    for e in published(app):
        assert amounts(e.credit_lines) == [123_45], e.model


async def test_odd_amounts_split_exactly_by_largest_remainder(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    touches = tuple(Touch(f"t{i}", "email", None, at(1 + i), i) for i in range(3))
    lead_id = leads.add(touches)
    won = await open_and_win(app, lead_id, amount=100)
    view = app.deal_attribution(won.deal_id, "linear")
    assert amounts(view.credits) == [34, 33, 33]  # the tie goes to the earlier touch


# -- revenue recognised later ---------------------------------------------------------


async def test_later_revenue_uses_the_journey_at_the_win(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lead_id = leads.add(EXAMPLE_TOUCHES)
    won = await open_and_win(app, lead_id)
    # The person keeps touching us after the win; that does not change the weights.
    journey = leads.journeys[lead_id]
    leads.journeys[lead_id] = replace(
        journey,
        touches=(*journey.touches, Touch("T5", "email", None, at(2, month=4), 4)),
    )
    renewal = RevenueFact(
        won.deal_id, lead_id, uuid.uuid4(), "renewal", usd(50_000), at(1, month=6)
    )
    churn = RevenueFact(
        won.deal_id, lead_id, uuid.uuid4(), "churn", usd(-30_001), at(1, month=9)
    )
    assert await app.attribute_revenue(renewal, meta()) is True
    assert await app.attribute_revenue(churn, meta()) is True
    assert await app.attribute_revenue(churn, meta()) is False  # redelivered

    events = published(app)
    assert len(events) == 3 * len(MODELS)
    churned = [e for e in events if e.revenue_id == str(churn.revenue_id)]
    assert {e.kind for e in churned} == {"revenue_recognized"}
    assert {e.revenue_kind for e in churned} == {"churn"}
    for e in churned:
        assert sum(c.amount_minor for c in e.credit_lines) == -30_001
        assert len(e.credit_lines) == 4
    linear = app.deal_attribution(won.deal_id, "linear")
    assert linear.revenue == usd(100_000 + 50_000 - 30_001)
    assert sum(amounts(linear.credits)) == linear.revenue.minor_units
    assert [c.touchpoint_id for c in linear.credits] == ["T1", "T2", "T3", "T4"]
    assert [v.kind for v in linear.conversions] == [
        "won",
        "revenue_recognized",
        "revenue_recognized",
    ]
    assert leads.asked == [lead_id]  # revenue never asks the lead service


async def test_revenue_before_the_win_is_credited_is_sent_back(
    app: Attributions,
) -> None:
    fact = RevenueFact(
        uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "new", usd(10), at(1, month=5)
    )
    with pytest.raises(Unavailable, match="before its win"):
        await app.attribute_revenue(fact, meta())


# -- reading ------------------------------------------------------------------------


async def test_compare_models_lists_every_model_side_by_side(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    won = await open_and_win(app, leads.add(EXAMPLE_TOUCHES))
    views = app.compare_models(won.deal_id)
    assert [v.model for v in views] == list(MODELS)
    for view in views:
        assert sum(amounts(view.credits)) == 100_000
        assert view.won_amount == usd(100_000)
        assert view.won_at == at(31)


async def test_unknown_open_and_lost_deals_have_no_attribution(
    app: Attributions,
) -> None:
    with pytest.raises(NotFound, match="has not learned"):
        app.deal_attribution(uuid.uuid4(), "linear")
    open_deal, lost_deal, lead_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await app.record_deal_opened(open_deal, lead_id, usd(1), at(1), meta())
    await app.record_deal_opened(lost_deal, lead_id, usd(1), at(1), meta())
    await app.record_deal_lost(lost_deal, lead_id, at(2), meta())
    with pytest.raises(NotFound, match="not won yet"):
        app.compare_models(open_deal)
    with pytest.raises(NotFound, match="lost"):
        app.deal_attribution(lost_deal, "linear")


# -- training -------------------------------------------------------------------------


async def journey_of(
    app: Attributions,
    channels: list[str],
    *,
    lead_id: uuid.UUID | None = None,
    anonymous_id: str = "",
    start: datetime = START,
) -> list[Touch]:
    """Records one touch a day, for a lead or a visitor; returns them as touches."""
    touches = []
    for i, channel in enumerate(channels):
        touch = Touch(str(uuid.uuid4()), channel, None, start + i * DAY, i)
        await app.record_touch(
            TouchFact(
                touch.touchpoint_id, anonymous_id, lead_id, channel, touch.occurred_at
            ),
            meta(),
        )
        touches.append(touch)
    return touches


async def converting(
    app: Attributions,
    leads: FakeLeadJourneys,
    channels: list[str],
    amount: int,
) -> DealWonFact:
    lead_id = uuid.uuid4()
    touches = await journey_of(app, channels, lead_id=lead_id)
    await app.record_lead_captured(lead_id, "", at(1), meta())
    leads.journeys[lead_id] = LeadJourney(lead_id, at(1), tuple(touches))
    return await open_and_win(
        app, lead_id, amount=amount, opened_at=at(10), closed_at=at(20)
    )


async def the_fixture(app: Attributions, leads: FakeLeadJourneys) -> None:
    """The journeys of DOMAIN.md 4.5, as people, leads and deals.

    paid_social > organic_search > paid_search > direct: won, 1000
    paid_social > direct: two that failed (a lost deal; an anonymous visitor)
    paid_search > direct: one won (600), one disqualified lead
    organic_search: an anonymous visitor who never came back
    Plus an open lead and an open deal, which training leaves out.
    """
    await converting(
        app, leads, ["paid_social", "organic_search", "paid_search", "direct"], 1000
    )
    lost_lead = uuid.uuid4()
    await journey_of(app, ["paid_social", "direct"], lead_id=lost_lead)
    await app.record_lead_captured(lost_lead, "", at(2), meta())
    lost_deal = uuid.uuid4()
    await app.record_deal_opened(lost_deal, lost_lead, usd(9), at(3), meta())
    await app.record_deal_lost(lost_deal, lost_lead, at(5), meta())
    await journey_of(app, ["paid_social", "direct"], anonymous_id="cookie-1")
    await converting(app, leads, ["paid_search", "direct"], 600)
    gone = uuid.uuid4()
    await journey_of(app, ["paid_search", "direct"], lead_id=gone)
    await app.record_lead_captured(gone, "", at(2), meta())
    await app.record_lead_disqualified(gone, at(4), "lead-event-1", meta())
    await journey_of(app, ["organic_search"], anonymous_id="cookie-2")
    still_open = uuid.uuid4()
    await journey_of(app, ["email", "email"], lead_id=still_open)
    await app.record_lead_captured(still_open, "", at(1), meta())
    open_deal_lead = uuid.uuid4()
    await journey_of(app, ["display"], lead_id=open_deal_lead)
    await app.record_lead_captured(open_deal_lead, "", at(1), meta())
    await app.record_deal_opened(uuid.uuid4(), open_deal_lead, usd(5), at(3), meta())


FIXTURE = [
    Journey(("paid_social", "organic_search", "paid_search", "direct"), 1, 1000, 0),
    Journey(("paid_social", "direct"), 0, 0, 2),
    Journey(("paid_search", "direct"), 1, 600, 1),
    Journey(("organic_search",), 0, 0, 1),
]


async def test_training_reads_every_finished_journey(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    await the_fixture(app, leads)
    app.fold.update()
    data = app.fold.training_data(app.settings.lookback)
    assert sorted(data.journeys) == sorted(FIXTURE)
    assert (data.journey_count, data.converting, data.value_currency) == (6, 2, "USD")


async def test_training_markov_and_shapley_on_the_domain_fixture(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    await the_fixture(app, leads)
    trained = {t.model: t for t in await app.train()}

    chain = trained["markov"]
    assert chain.probability == pytest.approx(1 / 3)
    effects = {c.channel: c.weight for c in chain.channels}
    assert effects == pytest.approx(
        {"direct": 1.0, "paid_search": 0.6, "paid_social": 0.5, "organic_search": 0.2}
    )
    values = {c.channel: c.value for c in chain.channels}
    assert values["direct"] == pytest.approx(695.65, abs=0.005)
    assert (chain.journeys, chain.converting_journeys) == (6, 2)
    assert chain.value_currency == "USD"
    assert chain.model_key == ModelSpec("markov").key

    game = trained["shapley"]
    conversions = {c.channel: c.weight for c in game.channels}
    assert conversions == pytest.approx(
        {
            "direct": 0.9167,
            "paid_search": 0.5167,
            "paid_social": 0.45,
            "organic_search": 0.1167,
        },
        abs=5e-5,
    )
    assert sum(c.share for c in game.channels) == pytest.approx(1.0)
    # The same as training the maths directly on the fixture.
    assert effects == pytest.approx(markov(FIXTURE).removal_effect)
    assert conversions == pytest.approx(shapley(FIXTURE).conversions)
    assert app.channel_model("markov") == chain
    assert app.channel_model("shapley") == game


async def test_later_wins_use_the_latest_trained_model(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    await the_fixture(app, leads)
    await app.train()
    won = await converting(app, leads, ["paid_social", "direct", "direct"], 95_000)
    markov_view = app.deal_attribution(won.deal_id, "markov")
    # RE: paid_social 0.5, direct 1.0 -> 1/3 and 2/3, direct's share over two touches.
    assert markov_view.fallback == ""
    assert amounts(markov_view.credits) == [31_667, 31_667, 31_666]
    shapley_view = app.deal_attribution(won.deal_id, "shapley")
    assert shapley_view.fallback == ""
    assert sum(amounts(shapley_view.credits)) == 95_000
    # A channel the model never saw weighs nothing; a journey of only such: linear.
    lone = await converting(app, leads, ["sms", "sms"], 10)
    assert app.deal_attribution(lone.deal_id, "markov").fallback == "linear"


async def test_training_follows_identity_stitching_and_merges(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    lead_id, duplicate = uuid.uuid4(), uuid.uuid4()
    await journey_of(app, ["paid_search"], anonymous_id="cookie-a", start=at(1))
    await journey_of(app, ["email"], lead_id=duplicate, start=at(2))
    await journey_of(app, ["direct"], lead_id=lead_id, start=at(3))
    await journey_of(app, ["display"], anonymous_id="cookie-b", start=at(4))
    await app.record_lead_captured(lead_id, "cookie-a", at(3), meta())
    await app.record_lead_captured(duplicate, "", at(2), meta())
    await app.record_visitor_identified(duplicate, "cookie-b", meta())
    await app.record_leads_merged(lead_id, duplicate, meta())
    # The deal was opened for the duplicate before the merge.
    deal_id = uuid.uuid4()
    await app.record_deal_opened(deal_id, duplicate, usd(1), at(5), meta())
    await app.record_deal_lost(deal_id, duplicate, at(6), meta())
    app.fold.update()
    data = app.fold.training_data(app.settings.lookback)
    assert data.journeys == (
        Journey(("paid_search", "email", "direct", "display"), 0, 0, 1),
    )


async def test_a_reopened_lead_is_in_progress_again(app: Attributions) -> None:
    lead_id = uuid.uuid4()
    await journey_of(app, ["email"], lead_id=lead_id)
    await app.record_lead_captured(lead_id, "", at(1), meta())
    await app.record_lead_disqualified(lead_id, at(2), "event-1", meta())
    await app.record_lead_disqualified(lead_id, at(2), "event-1", meta())  # again
    app.fold.update()
    assert app.fold.training_data(app.settings.lookback).journey_count == 1
    await app.record_lead_reopened(lead_id, at(3), "event-2", meta())
    app.fold.update()
    assert app.fold.training_data(app.settings.lookback).journey_count == 0


async def test_redelivered_lead_events_record_nothing(app: Attributions) -> None:
    lead_id = uuid.uuid4()
    fact = TouchFact("tp-1", "", lead_id, "email", at(1))
    assert await app.record_touch(fact, meta()) is True
    await app.record_lead_captured(lead_id, "cookie-9", at(1), meta())
    await app.record_leads_merged(lead_id, uuid.uuid4(), meta())
    before = notifications(app)
    assert await app.record_touch(fact, meta()) is False
    assert await app.record_lead_captured(lead_id, "cookie-9", at(1), meta()) is False
    assert await app.record_visitor_identified(lead_id, "cookie-9", meta()) is False
    assert notifications(app) == before


async def test_nothing_to_learn_from_is_a_failed_precondition(
    app: Attributions,
) -> None:
    await journey_of(app, ["display"], anonymous_id="cookie-1")
    with pytest.raises(FailedPrecondition, match="none converting"):
        await app.train()
    with pytest.raises(NotFound, match="not been trained"):
        app.channel_model("markov")


async def test_the_fold_reads_only_what_is_new(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    await the_fixture(app, leads)
    first = app.fold.update()
    assert first > 0
    assert app.fold.update() == 0
    await journey_of(app, ["email"], anonymous_id="cookie-new")
    assert app.fold.update() == 2  # the visitor's journey started, one touch


async def test_the_schedule_trains_and_stops(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    await the_fixture(app, leads)
    trained = asyncio.Event()
    schedule = TrainingSchedule(app, 0.05, on_trained=lambda _: trained.set())
    schedule.start()
    await asyncio.wait_for(trained.wait(), 10)
    await schedule.close()
    assert app.channel_model("markov").journeys == 6


async def test_a_schedule_of_zero_never_runs(app: Attributions) -> None:
    schedule = TrainingSchedule(app, 0)
    schedule.start()
    await schedule.close()


async def test_order_two_settings_train_an_order_two_chain(
    leads: FakeLeadJourneys,
) -> None:
    store = AttributionStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    executor = CommandExecutor(store)
    settings = AttributionSettings(markov_order=2, half_life=timedelta(days=3))
    app = Attributions(store, executor, lead_journeys=leads, settings=settings)
    try:
        await the_fixture(app, leads)
        trained = {t.model: t for t in await app.train(["markov"])}
        assert trained["markov"].model_key == ("markov(lookback=7776000s,order=2)")
        expected = markov(FIXTURE, ModelSpec("markov", order=2)).removal_effect
        assert trained["markov"].weights == pytest.approx(expected)
        assert app.specs["time_decay"].half_life == timedelta(days=3)
    finally:
        await executor.close()
        store.close()


# -- spend ----------------------------------------------------------------------------


def spend(**fields: Any) -> RecordSpend:
    values: dict[str, Any] = {
        "channel": "paid_search",
        "campaign": "brand",
        "amount": usd(250_000),
        "period_start": datetime(2026, 3, 1, tzinfo=UTC),
        "period_end": datetime(2026, 4, 1, tzinfo=UTC),
        "occurred_at": datetime(2026, 4, 2, tzinfo=UTC),
    }
    values.update(fields)
    return RecordSpend(**values)


async def test_spend_is_recorded_once_per_key_and_listed(app: Attributions) -> None:
    first, created = await app.record_spend(spend(idempotency_key="inv-1"), meta())
    assert created is True
    again, created = await app.record_spend(
        spend(idempotency_key="inv-1", amount=usd(1)), meta()
    )
    assert (again.id, created, again.amount) == (first.id, False, usd(250_000))
    await app.record_spend(
        spend(
            channel="paid_social",
            campaign="launch",
            amount=Money(90_000, "EUR"),
            period_start=datetime(2026, 4, 1, tzinfo=UTC),
            period_end=datetime(2026, 5, 1, tzinfo=UTC),
        ),
        meta(),
    )
    await app.record_spend(spend(amount=usd(1_000)), meta())

    everything = app.list_spend(SpendFilter())
    assert len(everything) == 3
    assert [s.channel for s in everything] == [
        "paid_search",
        "paid_search",
        "paid_social",
    ]
    assert spend_totals(everything) == [Money(90_000, "EUR"), usd(251_000)]
    assert len(app.list_spend(SpendFilter(channel="paid_social"))) == 1
    assert app.list_spend(SpendFilter(channel="email")) == []
    april = SpendFilter(
        start=datetime(2026, 4, 1, tzinfo=UTC), end=datetime(2026, 4, 15, tzinfo=UTC)
    )
    assert [s.channel for s in app.list_spend(april)] == ["paid_social"]
    assert len(app.list_spend(SpendFilter(campaign="brand"))) == 2


async def test_bad_spend_is_refused_by_the_domain(app: Attributions) -> None:
    with pytest.raises(InvalidArgument) as negative:
        await app.record_spend(spend(amount=usd(-1)), meta())
    assert negative.value.field == "amount.minor_units"
    with pytest.raises(InvalidArgument) as backwards:
        await app.record_spend(
            spend(period_end=datetime(2026, 2, 1, tzinfo=UTC)), meta()
        )
    assert backwards.value.field == "period_end"
    assert notifications(app) == 0


async def test_every_heuristic_model_is_credited(app: Attributions) -> None:
    assert set(HEURISTIC_MODELS) | set(DATA_DRIVEN_MODELS) == set(MODELS)
    assert set(app.specs) == set(MODELS)


async def test_stored_credits_survive_a_reload(
    app: Attributions, leads: FakeLeadJourneys
) -> None:
    won = await open_and_win(app, leads.add(EXAMPLE_TOUCHES))
    stored = app.store.repository.get(conversion_id(won.deal_id, "won"))
    assert isinstance(stored, ConversionCredits)
    assert stored.credited["linear"].credits[0].occurred_at == at(1)
    assert stored.amount == usd(100_000)
