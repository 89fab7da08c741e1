"""funnel_by_channel: each person's entry channel and the first time of each stage."""

from __future__ import annotations

from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections.times import micros_of
from closedloop.readmodels.funnel_by_channel import people, visitors
from closedloop.testing.readside import (
    Scenario,
    apply_events,
    at,
    ident,
    scripted_quarter,
    snapshot,
)
from services.projector.projections.funnel_by_channel import FunnelByChannel


def us(day: str) -> int:
    return micros_of(at(day))


def test_each_person_has_one_row_with_channels_and_stage_times() -> None:
    projection = FunnelByChannel()
    store, key = apply_events(projection, scripted_quarter().log.events, batch_size=3)
    rows = {row[0]: row[1:] for row in snapshot(store, projection, key)[people.name]}
    # created, first channel, last channel before lead, mql, sal, opportunity, won,
    # disqualified, won revenue
    assert rows[ident("lead", "ann")] == (
        us("2026-01-12"),
        "paid_search",
        "direct",
        us("2026-01-15"),
        us("2026-01-20"),
        us("2026-02-01"),
        us("2026-02-20"),
        False,
        '{"USD": 1200000}',
    )
    # Dan's duplicate was an MQL before the merge: the person was, from then on.
    assert rows[ident("lead", "dan")] == (
        us("2026-02-02"),
        "paid_search",
        "paid_search",
        us("2026-02-04"),
        us("2026-02-10"),
        us("2026-02-15"),
        us("2026-03-10"),
        False,
        '{"USD": 300000}',
    )
    assert ident("lead", "dan2") not in rows
    assert rows[ident("lead", "cara")][3] is None  # accepted without being an MQL
    assert rows[ident("lead", "eve")][7] is True
    assert len(rows) == 7


def test_visitors_are_counted_once_with_their_first_touch() -> None:
    projection = FunnelByChannel()
    store, key = apply_events(projection, scripted_quarter().log.events)
    rows = {row[0]: row[1:] for row in snapshot(store, projection, key)[visitors.name]}
    assert rows["v-zed"] == (us("2026-01-15"), "paid_search", "paid_search", False)
    assert rows["v-ann"] == (us("2026-01-05"), "paid_search", "direct", True)
    assert len(rows) == 9


def test_touches_after_the_lead_was_created_or_before_the_lookback_do_not_count() -> (
    None
):
    s = Scenario()
    s.touch("2025-09-01", visitor="v-old", channel=lead_types.CHANNEL_DISPLAY)
    s.touch("2026-01-01", visitor="v-old", channel=lead_types.CHANNEL_EMAIL)
    lead = s.capture("late", "2026-01-02", visitor="v-old")
    s.touch("2026-01-03", lead_id=lead, channel=lead_types.CHANNEL_PAID_SEARCH)
    projection = FunnelByChannel()
    store, key = apply_events(projection, s.log.events)
    (row,) = snapshot(store, projection, key)[people.name]
    assert row[2:4] == ("email", "email")
    s2 = Scenario()
    lead = s2.capture("untouched", "2026-01-02")
    s2.touch("2026-01-03", lead_id=lead, channel=lead_types.CHANNEL_PAID_SEARCH)
    store, key = apply_events(projection, s2.log.events)
    (row,) = snapshot(store, projection, key)[people.name]
    assert row[2:4] == ("unattributed", "unattributed")
