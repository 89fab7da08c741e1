"""customer_value: revenue per customer over time, and how each customer was won."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.projections import ApplyContext, Event, Projection, ProjectionError
from closedloop.projections.times import micros, month_of
from closedloop.protobuf import enum_name
from closedloop.readmodels.customer_value import (
    BOUGHT,
    EARNED,
    READ_MODEL,
    UNKNOWN,
    customers,
    deals,
    identity,
    monthly,
    revenues,
)
from closedloop.readmodels.identity import VISITOR, Touch, chunks
from services.projector.projections.identity import Identity, touch_row

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Channels whose customers are bought (DOMAIN.md section 6): paid media and
#: affiliates.
BOUGHT_CHANNELS = frozenset(
    {"paid_search", "paid_social", "paid_video", "display", "paid_other", "affiliate"}
)
EARNED_CHANNELS = frozenset({"word_of_mouth"})
#: A touch whose interaction is a referral came from a person who recommended us.
EARNED_INTERACTIONS = frozenset({"referral"})


def acquisition_of(first: Touch | None) -> str:
    """Earned or bought from the first touch (DOMAIN.md 6); unknown is never guessed.

    The events carry no `acquisition_reason`, so the first touch decides: word of
    mouth, or a referral by a person (interaction `referral`), is earned; paid
    channels and affiliates are bought; anything else, or no touch, is unknown.
    """
    if first is None:
        return UNKNOWN
    if first.channel in EARNED_CHANNELS or first.interaction in EARNED_INTERACTIONS:
        return EARNED
    if first.channel in BOUGHT_CHANNELS:
        return BOUGHT
    return UNKNOWN


class CustomerValue(Projection):
    """Revenue per customer over time (realised LTV), and earned or bought.

    It feeds NRR, LTV by cohort and the earned growth rate.

    A customer is a person (surviving lead) with a won deal, acquired at the first
    win. Revenue is what the deal context recognised (RevenueRecognized: new,
    renewal, expansion, and negative contraction and churn), by business time.
    """

    name = READ_MODEL.name
    version = READ_MODEL.version
    description = "recognised revenue per customer and month; earned vs bought"
    handles = (
        lead_events.TouchpointRecorded,
        lead_events.LeadCaptured,
        lead_events.VisitorIdentified,
        lead_events.LeadsMerged,
        lead_events.LeadMergedInto,
        deal_events.DealWon,
        deal_events.RevenueRecognized,
    )
    tables = READ_MODEL.tables

    def apply(self, batch: Sequence[Event], ctx: ApplyContext) -> None:
        ids = Identity.of(ctx, identity)
        dirty: set[str] = set()
        touches: list[dict[str, Any]] = []
        for event in batch:
            m = event.message
            if isinstance(m, lead_events.TouchpointRecorded):
                row = touch_row(event, m)
                if not row["owner_key"]:
                    raise ProjectionError("a touchpoint without lead or visitor")
                touches.append(row)
                if row["owner_kind"] == VISITOR:
                    dirty.update(ids.leads_of_visitor(row["owner_key"]))
                else:
                    ids.ensure_leads([row["owner_key"]])
                    dirty.add(row["owner_key"])
            elif isinstance(m, lead_events.LeadCaptured):
                at = micros(m.occurred_at)
                ids.capture(m.lead_id, at, "")
                ids.identify(m.anonymous_id, m.lead_id, at)
                dirty.add(m.lead_id)
            elif isinstance(m, lead_events.VisitorIdentified):
                ids.identify(m.anonymous_id, m.lead_id, micros(m.occurred_at))
                dirty.add(m.lead_id)
            elif isinstance(m, lead_events.LeadsMerged | lead_events.LeadMergedInto):
                ids.merge(m.merged_lead_id, m.surviving_lead_id)
                dirty.update((m.merged_lead_id, m.surviving_lead_id))
            elif isinstance(m, deal_events.DealWon):
                _require(m.deal_id and m.lead_id, "DealWon names no deal or lead")
                ids.ensure_leads([m.lead_id])
                ctx.upsert(
                    deals,
                    [
                        {
                            "deal_id": m.deal_id,
                            "lead_id": m.lead_id,
                            "won_at_us": micros(m.closed_at),
                        }
                    ],
                )
                dirty.add(m.lead_id)
            elif isinstance(m, deal_events.RevenueRecognized):
                _require(
                    m.revenue_id and m.lead_id and m.amount.currency,
                    "RevenueRecognized without revenue id, lead or currency",
                )
                ids.ensure_leads([m.lead_id])
                ctx.upsert(
                    revenues,
                    [
                        {
                            "revenue_id": m.revenue_id,
                            "deal_id": m.deal_id,
                            "lead_id": m.lead_id,
                            "kind": enum_name(
                                deal_types.RevenueKind, "REVENUE_KIND_", m.kind
                            ),
                            "currency": m.amount.currency,
                            "amount_minor": m.amount.minor_units,
                            "recognized_at_us": micros(m.recognized_at),
                        }
                    ],
                )
                dirty.add(m.lead_id)
        ids.record_touches(touches)
        visitors = {t["owner_key"] for t in touches if t["owner_kind"] == VISITOR}
        dirty.update(ids.leads_of_visitors(visitors))
        dirty.discard("")
        refresh_customers(ctx, ids, dirty)


def _require(ok: object, message: str) -> None:
    if not ok:
        raise ProjectionError(message)


def refresh_customers(  # noqa: C901 - wins, revenue, first touch, rows
    ctx: ApplyContext, ids: Identity, lead_ids: set[str]
) -> None:
    """The customers of these leads, worked out again from the people's facts.

    A lead merged into another loses its rows; a person with no win has none.
    """
    everyone = ids.people(lead_ids)
    for template in (customers, monthly):
        table = ctx.table(template)
        for chunk in chunks(lead_ids | set(everyone)):
            ctx.conn.execute(table.delete().where(table.c.lead_id.in_(chunk)))
    members = {m: root for root, p in everyone.items() for m in p.members}
    won: dict[str, list[int]] = defaultdict(list)
    deal_table = ctx.table(deals)
    for chunk in chunks(members):
        for lead_id, at in ctx.conn.execute(
            sa.select(deal_table.c.lead_id, deal_table.c.won_at_us).where(
                deal_table.c.lead_id.in_(chunk)
            )
        ):
            won[members[lead_id]].append(int(at))
    amounts: dict[tuple[str, str, str], int] = defaultdict(int)
    revenue_table = ctx.table(revenues)
    for chunk in chunks(members):
        for row in ctx.conn.execute(
            sa.select(revenue_table).where(revenue_table.c.lead_id.in_(chunk))
        ):
            key = (
                members[row.lead_id],
                month_of(int(row.recognized_at_us)),
                row.currency,
            )
            amounts[key] += int(row.amount_minor)
    rows = []
    for root, person in sorted(everyone.items()):
        if not won[root]:
            continue
        acquired = min(won[root])
        counted = [t for t in person.touches if t.occurred_at_us <= acquired]
        first = counted[0] if counted else None
        rows.append(
            {
                "lead_id": root,
                "acquired_at_us": acquired,
                "cohort_month": month_of(acquired),
                "channel": first.channel if first else "unattributed",
                "interaction": first.interaction if first else "",
                "acquisition": acquisition_of(first),
            }
        )
    if rows:
        ctx.conn.execute(ctx.table(customers).insert(), rows)
    series = [
        {"lead_id": root, "month": month, "currency": currency, "amount_minor": amount}
        for (root, month, currency), amount in sorted(amounts.items())
    ]
    if series:
        ctx.conn.execute(ctx.table(monthly).insert(), series)
