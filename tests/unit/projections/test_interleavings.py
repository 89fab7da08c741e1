"""Any interleaving of the contexts gives the same rows (DESIGN: the log may deliver a
DealWon before the LeadCaptured it refers to). Within a context the order is kept,
as the log keeps it; across contexts everything is shuffled, batches are cut at
random, and some events arrive twice."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from closedloop.projections import discover
from closedloop.testing.readside import (
    Published,
    apply_events,
    log_messages,
    scripted_quarter,
    snapshot,
)

if TYPE_CHECKING:
    from closedloop.projections.base import Projection

SEEDS = range(6)
ORDERS = [
    ("lead", "deal", "consent", "attribution"),
    ("attribution", "consent", "deal", "lead"),
    ("deal", "attribution", "lead", "consent"),
]


def shuffled(events: list[Published], rng: random.Random) -> list[Published]:
    """A random merge of the contexts' sequences, each in its own order."""
    queues: dict[str, list[Published]] = {}
    for event in events:
        queues.setdefault(event.context, []).append(event)
    merged: list[Published] = []
    while queues:
        context = rng.choice(sorted(queues))
        merged.append(queues[context].pop(0))
        if not queues[context]:
            del queues[context]
    return merged


def in_context_order(
    events: list[Published], order: tuple[str, ...]
) -> list[Published]:
    return [e for context in order for e in events if e.context == context]


@pytest.fixture(scope="module")
def events() -> list[Published]:
    return scripted_quarter().log.events


@pytest.fixture(scope="module", params=sorted(discover({}).projections))
def projection(request: pytest.FixtureRequest) -> Projection:
    return discover({}).get(request.param)()


@pytest.fixture(scope="module")
def expected(
    events: list[Published], projection: Projection
) -> dict[str, list[tuple[object, ...]]]:
    store, key = apply_events(projection, events, batch_size=len(events))
    return snapshot(store, projection, key)


@pytest.mark.parametrize("seed", SEEDS)
def test_shuffled_contexts_give_the_same_rows(
    seed: int,
    events: list[Published],
    projection: Projection,
    expected: dict[str, list[tuple[object, ...]]],
) -> None:
    rng = random.Random(seed)
    order = shuffled(events, rng)
    messages = log_messages(order)
    # Some events are delivered again further on (e.g. a context republished).
    repeats = rng.sample(messages, 8)
    messages += [
        type(m)(len(messages) + i + 1, m.subject, m.headers, m.data)
        for i, m in enumerate(repeats)
    ]
    store, key = apply_events(projection, messages, batch_size=rng.randint(1, 20))
    assert snapshot(store, projection, key) == expected


@pytest.mark.parametrize("order", ORDERS, ids=">".join)
def test_whole_contexts_in_any_order_give_the_same_rows(
    order: tuple[str, ...],
    events: list[Published],
    projection: Projection,
    expected: dict[str, list[tuple[object, ...]]],
) -> None:
    store, key = apply_events(
        projection, in_context_order(events, order), batch_size=11
    )
    assert snapshot(store, projection, key) == expected
