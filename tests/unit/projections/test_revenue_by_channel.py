"""revenue_by_channel: credits per channel, campaign, model and month; spend."""

from __future__ import annotations

from closedloop.attribution.v1 import events_pb2 as attribution
from closedloop.projections import GenerationKey, ReadStore
from closedloop.readmodels.revenue_by_channel import revenue, spend_by_month
from closedloop.testing.readside import (
    Scenario,
    apply_events,
    ident,
    log_messages,
    scripted_quarter,
    snapshot,
)
from services.projector.projections.revenue_by_channel import (
    RevenueByChannel,
    customer_shares,
)

LINEAR = "linear(lookback=7776000s)"
FIRST = "first_touch(lookback=7776000s)"


def test_the_quarter_credits_each_channel_per_model_and_month() -> None:
    projection = RevenueByChannel()
    store, key = apply_events(projection, scripted_quarter().log.events, batch_size=7)
    rows = snapshot(store, projection, key)[revenue.name]
    # (model_key, kind, month, currency, channel, campaign, model, revenue,
    #  customers in millionths, conversions)
    assert rows == [
        (
            FIRST,
            "won",
            "2026-01",
            "USD",
            "word_of_mouth",
            "",
            "first_touch",
            800_000,
            1_000_000,
            1,
        ),
        (
            FIRST,
            "won",
            "2026-02",
            "USD",
            "paid_search",
            "spring-search",
            "first_touch",
            1_200_000,
            1_000_000,
            1,
        ),
        (
            FIRST,
            "won",
            "2026-03",
            "USD",
            "paid_search",
            "spring-search",
            "first_touch",
            300_000,
            1_000_000,
            1,
        ),
        (
            LINEAR,
            "won",
            "2026-01",
            "USD",
            "word_of_mouth",
            "",
            "linear",
            800_000,
            1_000_000,
            1,
        ),
        (LINEAR, "won", "2026-02", "USD", "direct", "", "linear", 600_000, 500_000, 1),
        (
            LINEAR,
            "won",
            "2026-02",
            "USD",
            "paid_search",
            "spring-search",
            "linear",
            600_000,
            500_000,
            1,
        ),
        (
            LINEAR,
            "won",
            "2026-03",
            "USD",
            "paid_search",
            "spring-search",
            "linear",
            300_000,
            1_000_000,
            1,
        ),
    ]


def test_spend_is_split_over_the_months_of_its_period() -> None:
    projection = RevenueByChannel()
    store, key = apply_events(projection, scripted_quarter().log.events)
    assert snapshot(store, projection, key)[spend_by_month.name] == [
        ("2026-01", "USD", "paid_search", "spring-search", 310_000),
        ("2026-02", "USD", "paid_search", "spring-search", 280_000),
        ("2026-02", "USD", "paid_social", "spring-social", 200_000),
        ("2026-03", "USD", "paid_search", "spring-search", 310_000),
    ]


def totals(
    store: ReadStore, projection: RevenueByChannel, key: GenerationKey
) -> list[tuple[str, int]]:
    rows = snapshot(store, projection, key)[revenue.name]
    return [(row[4], row[7]) for row in rows]


def test_a_conversion_credited_anew_replaces_its_earlier_credits() -> None:
    s = Scenario()
    deal, lead = ident("deal", "x"), ident("lead", "x")
    s.attribute(
        deal,
        lead,
        "2026-02-01",
        "markov",
        [("paid_search", "", 700), ("email", "", 300)],
    )
    first = s.log.events[-1].message
    assert isinstance(first, attribution.RevenueAttributed)
    # The same conversion and model again, as a new event (a re-attribution).
    again = attribution.RevenueAttributed()
    again.CopyFrom(first)
    again.credits[0].amount.minor_units = 1000
    del again.credits[1]
    s.log.add(again, aggregate=ident("conversion", f"{deal}:won"))
    projection = RevenueByChannel()
    store, key = apply_events(projection, s.log.events[:1])
    assert totals(store, projection, key) == [("email", 300), ("paid_search", 700)]
    for batch_size in (1, 2):
        store, key = apply_events(projection, s.log.events, batch_size=batch_size)
        assert totals(store, projection, key) == [("paid_search", 1000)]


def test_the_same_event_twice_counts_once() -> None:
    messages = log_messages(scripted_quarter().log.events)
    attributed = [
        m for m in messages if m.headers["ce-type"].endswith("RevenueAttributed")
    ]
    again = [
        type(m)(len(messages) + i + 1, m.subject, m.headers, m.data)
        for i, m in enumerate(attributed)
    ]
    projection = RevenueByChannel()
    once, key_once = apply_events(projection, messages)
    twice, key_twice = apply_events(projection, messages + again)
    assert snapshot(once, projection, key_once) == snapshot(
        twice, projection, key_twice
    )


def test_credits_that_do_not_sum_to_the_conversion_are_parked() -> None:
    s = Scenario()
    s.attribute(
        ident("deal", "y"),
        ident("lead", "y"),
        "2026-02-01",
        "linear",
        [("email", "", 10)],
    )
    s.log.events[-1].message.amount.minor_units = 11  # type: ignore[attr-defined]
    projection = RevenueByChannel()
    store, key = apply_events(projection, s.log.events)
    (parked,) = store.parked(key)
    assert "do not sum" in parked.error
    assert snapshot(store, projection, key)[revenue.name] == []


def test_customer_shares_sum_to_one_customer_exactly() -> None:
    assert customer_shares([1, 1, 1]) == [333_334, 333_333, 333_333]
    assert sum(customer_shares([437, 1, 99_999])) == 1_000_000
    assert customer_shares([0, 0]) == [500_000, 500_000]
    assert customer_shares([-300, -100]) == [750_000, 250_000]
