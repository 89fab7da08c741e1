"""The runner's core: rows and position in one transaction, retries, parking."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import pytest
import sqlalchemy as sa

from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections import (
    ApplyContext,
    Event,
    Projection,
    ProjectionError,
    ReadStore,
)
from closedloop.projections.reader import LogMessage
from closedloop.projections.runner import Applier, GenerationRetired, is_transient
from closedloop.projections.store import ACTIVE, RETIRED, generations
from closedloop.testing.readside import EventLog, log_messages

if TYPE_CHECKING:
    from collections.abc import Sequence

metadata = sa.MetaData()
touches = sa.Table(
    "runner_touches_v1",
    metadata,
    sa.Column("touchpoint_id", sa.String(64), primary_key=True),
    sa.Column("campaign", sa.String(64), nullable=False),
)


class Touches(Projection):
    """Stores each touchpoint; refuses the campaigns in `refused`."""

    name = "runner_touches"
    version = 1
    handles = (lead_events.TouchpointRecorded,)
    tables = (touches,)
    refused: ClassVar[set[str]] = set()
    calls: ClassVar[list[int]] = []

    def apply(self, batch: Sequence[Event], ctx: ApplyContext) -> None:
        self.calls.append(len(batch))
        for event in batch:
            assert isinstance(event.message, lead_events.TouchpointRecorded)
            tp = event.message.touchpoint
            if tp.campaign in self.refused:
                raise ProjectionError(f"campaign {tp.campaign} refused")
            ctx.insert_missing(
                touches, [{"touchpoint_id": tp.touchpoint_id, "campaign": tp.campaign}]
            )


@pytest.fixture(autouse=True)
def _reset() -> None:
    Touches.refused = set()
    Touches.calls = []


def touch_log(count: int, campaign: str = "c") -> list[LogMessage]:
    log = EventLog()
    for i in range(count):
        log.add(
            lead_events.TouchpointRecorded(
                touchpoint=lead_types.Touchpoint(
                    touchpoint_id=f"t{i}", anonymous_id="v", campaign=f"{campaign}{i}"
                )
            ),
            aggregate="visitor",
        )
        log.add(
            lead_events.VisitorFirstSeen(anonymous_id=f"v{i}"), aggregate=f"other{i}"
        )
    return log_messages(log.events)


def setup() -> tuple[ReadStore, Applier]:
    store = ReadStore("sqlite:///:memory:")
    projection = Touches()
    generation = store.create_generation(projection, created_by="test")
    return store, Applier(store, projection, generation.key, max_attempts=3)


def stored(store: ReadStore, applier: Applier) -> list[str]:
    table = store.tables_for(applier.projection, applier.key)[touches]
    with store.read() as conn:
        return [
            r[0]
            for r in conn.execute(
                sa.select(table.c.touchpoint_id).order_by(table.c.touchpoint_id)
            )
        ]


def test_a_batch_moves_the_position_over_unhandled_events_too() -> None:
    store, applier = setup()
    messages = touch_log(5)
    result = applier.apply(messages[:6])
    assert (result.position, result.applied, result.parked) == (6, 3, 0)
    generation = store.generation(applier.key)
    assert generation is not None
    assert (generation.position, generation.events_applied) == (6, 3)
    assert stored(store, applier) == ["t0", "t1", "t2"]


def test_events_at_or_below_the_position_are_applied_once() -> None:
    store, applier = setup()
    messages = touch_log(5)
    applier.apply(messages[:6])
    # Delivered again after a crash (at least once): only the new ones count.
    result = applier.apply(messages[2:10])
    assert (result.position, result.applied) == (10, 2)
    assert applier.apply(messages[:10]).applied == 0
    generation = store.generation(applier.key)
    assert generation is not None
    assert generation.events_applied == 5
    assert stored(store, applier) == ["t0", "t1", "t2", "t3", "t4"]


def test_an_event_that_keeps_failing_is_parked_and_the_batch_goes_on() -> None:
    store, applier = setup()
    Touches.refused = {"c2"}
    result = applier.apply(touch_log(5))
    assert (result.position, result.applied, result.parked) == (10, 4, 1)
    assert stored(store, applier) == ["t0", "t1", "t3", "t4"]
    # The whole batch once, then the events alone; the refused one three times.
    assert Touches.calls == [5, 1, 1, 1, 1, 1, 1, 1]
    (parked,) = store.parked()
    assert parked.seq == 5
    assert parked.attempts == 3
    assert "campaign c2 refused" in parked.error
    assert parked.event_type == "closedloop.lead.v1.TouchpointRecorded"
    generation = store.generation(applier.key)
    assert generation is not None
    assert generation.parked == 1


def test_a_parked_event_applies_after_the_fix() -> None:
    store, applier = setup()
    Touches.refused = {"c2"}
    applier.apply(touch_log(5))
    (parked,) = store.parked()
    assert applier.retry_parked(parked) is not None  # still broken
    assert store.parked()[0].attempts == 6
    Touches.refused = set()
    assert applier.retry_parked(store.parked()[0]) is None
    assert store.parked() == []
    assert len(store.parked(include_resolved=True)) == 1
    assert stored(store, applier) == ["t0", "t1", "t2", "t3", "t4"]
    generation = store.generation(applier.key)
    assert generation is not None
    assert (generation.parked, generation.events_applied) == (0, 5)


def test_undecodable_messages_are_parked_without_retrying_the_batch() -> None:
    store, applier = setup()
    good = touch_log(2)
    garbage = LogMessage(
        5,
        "closedloop.lead.v1.TouchpointRecorded",
        {**good[0].headers, "ce-id": "garbage"},
        b"\xff\xff\xff\xff",
    )
    headerless = LogMessage(6, "closedloop.lead.v1.TouchpointRecorded", {}, b"")
    result = applier.apply([*good, garbage, headerless])
    assert (result.position, result.applied, result.parked) == (6, 2, 2)
    errors = {p.seq: p.error for p in store.parked()}
    assert errors[5].startswith("cannot decode")
    assert "CloudEvents" in errors[6]
    assert Touches.calls == [2]


def test_a_retired_generation_takes_no_more_events() -> None:
    store, applier = setup()
    with store.write() as conn:
        conn.execute(generations.update().values(state=RETIRED))
    with pytest.raises(GenerationRetired):
        applier.apply(touch_log(1))


def test_switching_is_atomic_and_retires_the_old_generation() -> None:
    store = ReadStore("sqlite:///:memory:")
    projection = Touches()
    first = store.create_generation(projection, created_by="test")
    store.activate(first.key)
    second = store.create_generation(projection, created_by="test")
    assert second.key.generation == 2
    names = [t.name for t in store.tables_for(projection, second.key).values()]
    assert names == ["runner_touches_v1_g2"]
    active = store.active(projection.name)
    assert active is not None
    assert active.key == first.key
    store.activate(second.key)
    states = {g.key.generation: g.state for g in store.generations(projection.name)}
    assert states == {1: RETIRED, 2: ACTIVE}
    # The next build drops the retired generation's tables and bookkeeping.
    third = store.create_generation(projection, created_by="test")
    assert [g.key.generation for g in store.generations(projection.name)] == [2, 3]
    with store.read() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert "runner_touches_v1" not in tables
    assert {"runner_touches_v1_g2", "runner_touches_v1_g3"} <= tables
    assert third.state == "building"


def test_leases_keep_two_runners_apart() -> None:
    store, applier = setup()
    assert store.claim(applier.key, "a") is not None
    assert store.claim(applier.key, "b") is None
    assert store.heartbeat(applier.key, "b") is None
    store.release(applier.key, "a")
    assert store.claim(applier.key, "b") is not None


def test_only_database_trouble_is_transient() -> None:
    locked = sa.exc.OperationalError("BEGIN", {}, Exception("database is locked"))
    missing = sa.exc.OperationalError("SELECT", {}, Exception("no such table: x"))
    assert is_transient(locked)
    assert not is_transient(missing)
    assert not is_transient(ProjectionError("bad event"))
