"""funnel_by_channel: each person's way through the funnel, by acquisition channel."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.projections import ApplyContext, Event, Projection, ProjectionError
from closedloop.projections.times import micros
from closedloop.readmodels.funnel_by_channel import (
    READ_MODEL,
    deals,
    identity,
    people,
    stages,
    visitors,
)
from closedloop.readmodels.identity import VISITOR, Person, Touch, chunks
from services.projector.projections.identity import Identity, least, touch_row

if TYPE_CHECKING:
    from collections.abc import Sequence

UNATTRIBUTED = "unattributed"
#: Touches more than this long before the lead was created do not count (DOMAIN 4.1).
LOOKBACK_US = 90 * 86_400 * 1_000_000

MQL = "mql"
SAL = "sal"
OPPORTUNITY = "opportunity"


class FunnelByChannel(Projection):
    """Where each person entered the funnel, and when they reached each stage.

    The entry is the first-touch channel and the last touch before the lead was
    created; with the first time of each stage, channels compare by cohort
    conversion, close rate and time between stages.

    Facts (touches, links, merges, stage times, deals) are stored under their own
    keys; after each batch the rows of the people it touched are worked out again
    from the facts, so any order of the contexts gives the same rows. A stage counts
    from its first time: leaving and re-entering does not move a lead's cohort.
    """

    name = READ_MODEL.name
    version = READ_MODEL.version
    description = "per-person funnel stages by first and last-touch channel"
    handles = (
        lead_events.TouchpointRecorded,
        lead_events.LeadCaptured,
        lead_events.VisitorIdentified,
        lead_events.LeadQualified,
        lead_events.LeadAccepted,
        lead_events.LeadDisqualified,
        lead_events.LeadReopened,
        lead_events.LeadsMerged,
        lead_events.LeadMergedInto,
        lead_events.LeadConverted,
        deal_events.DealOpened,
        deal_events.DealWon,
    )
    tables = READ_MODEL.tables

    def apply(  # noqa: C901, PLR0912, PLR0915 - a branch per event type
        self, batch: Sequence[Event], ctx: ApplyContext
    ) -> None:
        ids = Identity.of(ctx, identity)
        dirty_leads: set[str] = set()
        dirty_visitors: set[str] = set()
        touches: list[dict[str, Any]] = []
        for event in batch:
            m = event.message
            version = event.envelope.sequence
            if isinstance(m, lead_events.TouchpointRecorded):
                row = touch_row(event, m)
                if not row["owner_key"]:
                    raise ProjectionError("a touchpoint without lead or visitor")
                touches.append(row)
                if row["owner_kind"] == VISITOR:
                    dirty_visitors.add(row["owner_key"])
                else:
                    ids.ensure_leads([row["owner_key"]])
                    dirty_leads.add(row["owner_key"])
            elif isinstance(m, lead_events.LeadCaptured):
                at = micros(m.occurred_at)
                ids.capture(m.lead_id, at, "")
                ids.set_stage(m.lead_id, "lead", at, version)
                ids.identify(m.anonymous_id, m.lead_id, at)
                dirty_leads.add(m.lead_id)
                dirty_visitors.add(m.anonymous_id)
            elif isinstance(m, lead_events.VisitorIdentified):
                ids.identify(m.anonymous_id, m.lead_id, micros(m.occurred_at))
                dirty_leads.add(m.lead_id)
                dirty_visitors.add(m.anonymous_id)
            elif isinstance(m, lead_events.LeadQualified):
                self._stage(ctx, ids, m.lead_id, MQL, micros(m.occurred_at))
                ids.set_stage(m.lead_id, MQL, micros(m.occurred_at), version)
                dirty_leads.add(m.lead_id)
            elif isinstance(m, lead_events.LeadAccepted):
                self._stage(ctx, ids, m.lead_id, SAL, micros(m.occurred_at))
                ids.set_stage(m.lead_id, SAL, micros(m.occurred_at), version)
                dirty_leads.add(m.lead_id)
            elif isinstance(m, lead_events.LeadDisqualified):
                ids.set_stage(m.lead_id, "disqualified", micros(m.occurred_at), version)
                dirty_leads.add(m.lead_id)
            elif isinstance(m, lead_events.LeadReopened):
                ids.set_stage(m.lead_id, "lead", micros(m.occurred_at), version)
                dirty_leads.add(m.lead_id)
            elif isinstance(m, lead_events.LeadConverted):
                self._stage(ctx, ids, m.lead_id, OPPORTUNITY, micros(m.occurred_at))
                ids.set_stage(m.lead_id, OPPORTUNITY, micros(m.occurred_at), version)
                dirty_leads.add(m.lead_id)
            elif isinstance(m, lead_events.LeadsMerged | lead_events.LeadMergedInto):
                ids.merge(m.merged_lead_id, m.surviving_lead_id)
                dirty_leads.update((m.merged_lead_id, m.surviving_lead_id))
            elif isinstance(m, deal_events.DealOpened | deal_events.DealWon):
                self._deal(ctx, ids, m)
                dirty_leads.add(m.lead_id)
        ids.record_touches(touches)
        dirty_visitors.discard("")
        dirty_leads.discard("")
        dirty_leads.update(ids.leads_of_visitors(dirty_visitors))
        refresh_visitors(ctx, ids, dirty_visitors)
        refresh_people(ctx, ids, dirty_leads)

    @staticmethod
    def _stage(
        ctx: ApplyContext, ids: Identity, lead_id: str, stage: str, at: int
    ) -> None:
        if not lead_id:
            raise ProjectionError("a stage change names no lead")
        ids.ensure_leads([lead_id])
        table = ctx.table(stages)
        statement = ctx.insert(stages).values(
            lead_id=lead_id, stage=stage, first_at_us=at
        )
        ctx.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["lead_id", "stage"],
                set_={
                    "first_at_us": least(
                        ctx.conn, table.c.first_at_us, statement.excluded.first_at_us
                    )
                },
            )
        )

    @staticmethod
    def _deal(
        ctx: ApplyContext,
        ids: Identity,
        m: deal_events.DealOpened | deal_events.DealWon,
    ) -> None:
        if not m.lead_id or not m.deal_id:
            raise ProjectionError("a deal event names no deal or lead")
        ids.ensure_leads([m.lead_id])
        if isinstance(m, deal_events.DealOpened):
            values: dict[str, Any] = {"opened_at_us": micros(m.occurred_at)}
        else:
            values = {
                "won_at_us": micros(m.closed_at),
                "won_minor": m.amount.minor_units,
                "currency": m.amount.currency,
            }
        statement = ctx.insert(deals).values(
            deal_id=m.deal_id, lead_id=m.lead_id, **values
        )
        ctx.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["deal_id"],
                set_={name: statement.excluded[name] for name in values},
            )
        )


def refresh_people(ctx: ApplyContext, ids: Identity, lead_ids: set[str]) -> None:
    """Works the rows of the people of these leads out again from the facts.

    A lead merged into another loses its row; a person not captured yet has none.
    """
    table = ctx.table(people)
    everyone = ids.people(lead_ids)
    for chunk in chunks(lead_ids | set(everyone)):
        ctx.conn.execute(table.delete().where(table.c.lead_id.in_(chunk)))
    members = {m for person in everyone.values() for m in person.members}
    firsts: dict[str, dict[str, int]] = defaultdict(dict)
    stage_table = ctx.table(stages)
    for chunk in chunks(members):
        for row in ctx.conn.execute(
            sa.select(stage_table).where(stage_table.c.lead_id.in_(chunk))
        ):
            firsts[row.lead_id][row.stage] = row.first_at_us
    by_lead: dict[str, list[Any]] = defaultdict(list)
    deal_table = ctx.table(deals)
    for chunk in chunks(members):
        for row in ctx.conn.execute(
            sa.select(deal_table).where(deal_table.c.lead_id.in_(chunk))
        ):
            by_lead[row.lead_id].append(row)
    rows: list[dict[str, Any]] = []
    for _, person in sorted(everyone.items()):
        made = person_row(person, firsts, by_lead)
        if made is not None:
            rows.append(made)
    if rows:
        ctx.conn.execute(table.insert(), rows)


def person_row(
    person: Person,
    firsts: dict[str, dict[str, int]],
    deals_of: dict[str, list[Any]],
) -> dict[str, Any] | None:
    created = [r.created_at_us for r in person.leads if r.created_at_us is not None]
    if not created:
        return None  # not captured yet: the person joins the funnel with LeadCaptured
    created_at = min(created)
    root_row = next((r for r in person.leads if r.lead_id == person.root), None)
    touches = [
        t
        for t in person.touches
        if created_at - LOOKBACK_US <= t.occurred_at_us <= created_at
    ]
    stage_times: dict[str, int] = {}
    for member in person.members:
        for stage, at in firsts.get(member, {}).items():
            stage_times[stage] = min(stage_times.get(stage, at), at)
    won: dict[str, int] = defaultdict(int)
    won_at: list[int] = []
    opportunity = [stage_times[OPPORTUNITY]] if OPPORTUNITY in stage_times else []
    for member in person.members:
        for deal in deals_of.get(member, []):
            if deal.opened_at_us is not None:
                opportunity.append(deal.opened_at_us)
            if deal.won_at_us is not None:
                won_at.append(deal.won_at_us)
                won[deal.currency] += int(deal.won_minor or 0)
    return {
        "lead_id": person.root,
        "created_at_us": created_at,
        "first_channel": _channel(touches[:1]),
        "last_channel": _channel(touches[-1:]),
        "mql_at_us": stage_times.get(MQL),
        "sal_at_us": stage_times.get(SAL),
        "opportunity_at_us": min(opportunity) if opportunity else None,
        "won_at_us": min(won_at) if won_at else None,
        "disqualified": bool(root_row is not None and root_row.stage == "disqualified"),
        "won_revenue": json.dumps(dict(sorted(won.items()))),
    }


def refresh_visitors(ctx: ApplyContext, ids: Identity, anonymous_ids: set[str]) -> None:
    table = ctx.table(visitors)
    for chunk in chunks(anonymous_ids):
        ctx.conn.execute(table.delete().where(table.c.anonymous_id.in_(chunk)))
    identified = ids.identified_at(anonymous_ids)
    rows = []
    for anonymous_id, touches in sorted(ids.visitor_touches(anonymous_ids).items()):
        if not touches:
            continue
        identified_at = identified.get(anonymous_id)
        before = (
            [t for t in touches if t.occurred_at_us <= identified_at]
            if identified_at is not None
            else touches
        )
        rows.append(
            {
                "anonymous_id": anonymous_id,
                "first_at_us": touches[0].occurred_at_us,
                "first_channel": touches[0].channel,
                "last_channel": _channel(before[-1:] or touches[:1]),
                "identified": identified_at is not None,
            }
        )
    if rows:
        ctx.conn.execute(table.insert(), rows)


def _channel(touches: Sequence[Touch]) -> str:
    return touches[0].channel if touches else UNATTRIBUTED
