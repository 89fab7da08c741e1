"""Projections under test: applied without NATS, followed until caught up, read back."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from closedloop.projections.reader import LogMessage, log_last_seq
from closedloop.projections.runner import Applier
from closedloop.projections.store import ACTIVE, ReadStore
from closedloop.testing.readside.eventlog import Published, log_messages

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.client import Client

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


class Follower(Protocol):
    """A projector following the log, as the projector service runs one."""

    @property
    def nc(self) -> Client: ...
    @property
    def store(self) -> ReadStore: ...
    @property
    def projections(self) -> Sequence[Projection]: ...


async def wait_caught_up(projector: Follower, timeout: float = 30.0) -> None:
    """Until every projection's active generation has applied the whole log."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        head = await log_last_seq(projector.nc)
        generations = await asyncio.to_thread(projector.store.generations)
        active = {g.name: g for g in generations if g.state == ACTIVE}
        if all(
            p.name in active
            and active[p.name].version == p.version
            and active[p.name].position >= head
            for p in projector.projections
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            msg = f"projections not caught up with the log at {head}: {active}"
            raise TimeoutError(msg)
        await asyncio.sleep(0.05)


def rows_of(conn: sa.Connection, table: sa.Table) -> list[tuple[Any, ...]]:
    """Every row of a table in key order: what tests compare between builds."""
    keys: Sequence[sa.Column[Any]] = list(table.primary_key.columns)
    return [tuple(row) for row in conn.execute(sa.select(table).order_by(*keys))]


def snapshot(
    store: ReadStore, projection: Projection, key: GenerationKey
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a generation, by template name, in key order."""
    with store.read() as conn:
        return {
            template.name: rows_of(conn, table)
            for template, table in store.tables_for(projection, key).items()
        }
