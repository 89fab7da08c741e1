"""Access to the read models: the active generation's tables of each projection.

The insights service reads only what the projector wrote. It finds each read
model's tables through the read store's bookkeeping on every call, so a blue/green
switch is seen by the next call, never half-way through one.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from closedloop.errors import FailedPrecondition
from closedloop.projections.store import ACTIVE, ReadStore

if TYPE_CHECKING:
    from collections.abc import Iterator

    import sqlalchemy as sa

    from closedloop.readmodels import ReadModel


class ReadModels:
    """The read store, opened for reading, with the read models it can serve."""

    def __init__(self, store: ReadStore) -> None:
        self.store = store

    @contextmanager
    def open(
        self, model: ReadModel
    ) -> Iterator[tuple[sa.Connection, dict[sa.Table, sa.Table]]]:
        """A read transaction and the active tables of `model` (by template)."""
        generations = self.store.generations(model.name)
        active = [g for g in generations if g.state == ACTIVE]
        if not active:
            raise FailedPrecondition(
                f"the read model {model.name} is not built yet; it is being "
                f"built, or run `closedloop projections add {model.name}`"
            )
        generation = active[0]
        if generation.version != model.version:
            raise FailedPrecondition(
                f"the read model {model.name} is at version {generation.version}, "
                f"this service reads version {model.version}; it is rebuilt "
                "by the projector (or `closedloop projections rebuild`)"
            )
        tables = self.store.tables_for(model, generation.key)
        with self.store.read() as conn:
            yield conn, tables
