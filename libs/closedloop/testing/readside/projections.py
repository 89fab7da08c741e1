"""A projection applied with the runner's own applier, and its tables read back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.projections.reader import LogMessage
from closedloop.projections.runner import Applier
from closedloop.projections.store import ReadStore, rows_of
from closedloop.testing.readside.eventlog import Published, log_messages

if TYPE_CHECKING:
    from collections.abc import Sequence

    from closedloop.projections.base import Projection
    from closedloop.projections.store import GenerationKey


def apply_events(
    projection: Projection,
    events: Sequence[Published] | Sequence[LogMessage],
    *,
    store: ReadStore | None = None,
    batch_size: int = 50,
    max_attempts: int = 3,
) -> tuple[ReadStore, GenerationKey]:
    """Builds a new generation from the events with the runner's own applier.

    No NATS is involved; the store is in memory unless one is given.
    """
    store = store or ReadStore("sqlite:///:memory:")
    generation = store.create_generation(projection, created_by="test")
    ready = [m for m in events if isinstance(m, LogMessage)]
    if len(ready) != len(events):
        ready = log_messages([e for e in events if isinstance(e, Published)])
    applier = Applier(store, projection, generation.key, max_attempts=max_attempts)
    for start in range(0, len(ready), batch_size):
        applier.apply(ready[start : start + batch_size])
    return store, generation.key


def snapshot(
    store: ReadStore, projection: Projection, key: GenerationKey
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a generation, by template name, in key order."""
    with store.read() as conn:
        return {
            template.name: rows_of(conn, table)
            for template, table in store.tables_for(projection, key).items()
        }
