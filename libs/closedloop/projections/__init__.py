"""Projections: read models built from the event log by a runner that owns position.

A projection (`Projection`) says what a read model holds; `closedloop.projections.
runner` applies the log to it in batches, storing rows and position in one
transaction; `ReadStore` holds the read models and their bookkeeping; `discover()`
finds the installed projections by entry point.
"""

from closedloop.projections.base import (
    ApplyContext,
    Event,
    Projection,
    ProjectionDefinitionError,
    ProjectionError,
)
from closedloop.projections.loader import ENTRY_POINT_GROUP, Registry, discover
from closedloop.projections.store import (
    ACTIVE,
    BUILDING,
    RETIRED,
    Generation,
    GenerationKey,
    ReadStore,
)

__all__ = [
    "ACTIVE",
    "BUILDING",
    "ENTRY_POINT_GROUP",
    "RETIRED",
    "ApplyContext",
    "Event",
    "Generation",
    "GenerationKey",
    "Projection",
    "ProjectionDefinitionError",
    "ProjectionError",
    "ReadStore",
    "Registry",
    "discover",
]
