"""Finding projections: entry points, the extra list, and the rules of a projection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.projections import (
    ApplyContext,
    Event,
    Projection,
    ProjectionDefinitionError,
    discover,
)
from closedloop.projections.loader import EXTRA_ENV, load_class

BUILT_IN = {
    "consent_status",
    "customer_journey",
    "customer_value",
    "funnel_by_channel",
    "revenue_by_channel",
}


class Unsuffixed(Projection):
    name = "unsuffixed"
    version = 2
    handles = (lead_events.LeadCaptured,)
    tables = (
        sa.Table(
            "unsuffixed_v1", sa.MetaData(), sa.Column("k", sa.String, primary_key=True)
        ),
    )

    def apply(self, batch: list[Event], ctx: ApplyContext) -> None:  # type: ignore[override]
        pass


class Keyless(Projection):
    name = "keyless"
    version = 1
    handles = (lead_events.LeadCaptured,)
    tables = (sa.Table("keyless_v1", sa.MetaData(), sa.Column("k", sa.String)),)

    def apply(self, batch: list[Event], ctx: ApplyContext) -> None:  # type: ignore[override]
        pass


def test_the_built_in_read_models_are_registered_by_entry_point() -> None:
    registry = discover({})
    assert set(registry.names()) >= BUILT_IN
    for name in BUILT_IN:
        assert registry.sources[name].startswith(
            f"entry point {name} = services.projector."
        )
    assert registry.errors == {}


def test_an_extra_class_can_be_named_in_the_environment() -> None:
    spec = f"{__name__}:Unsuffixed"
    registry = discover({EXTRA_ENV: f" {spec} , no.such.module:Thing, notaspec"})
    assert "unsuffixed" not in registry.projections
    assert "tables" in registry.errors[spec] or "_v2" in registry.errors[spec]
    assert "ModuleNotFoundError" in registry.errors["no.such.module:Thing"]
    assert "ValueError" in registry.errors["notaspec"]
    assert set(registry.names()) >= BUILT_IN


def test_tables_carry_the_version_and_a_key() -> None:
    with pytest.raises(ProjectionDefinitionError, match="must end with _v2"):
        Unsuffixed.check_definition()
    with pytest.raises(ProjectionDefinitionError, match="primary key"):
        Keyless.check_definition()


def test_load_class_refuses_what_is_not_a_projection() -> None:
    with pytest.raises(TypeError, match="not a Projection"):
        load_class("closedloop.projections.times:micros")
    assert (
        load_class(
            "services.projector.projections.revenue_by_channel:RevenueByChannel"
        ).name
        == "revenue_by_channel"
    )
