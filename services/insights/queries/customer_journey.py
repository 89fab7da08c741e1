"""A person's journey: every fact of the customer_journey read model that is theirs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.errors import NotFound
from closedloop.money import Money
from closedloop.readmodels import customer_journey
from closedloop.readmodels.identity import (
    LEAD,
    VISITOR,
    IdentityReader,
    IdentityTables,
)

if TYPE_CHECKING:
    from services.insights.queries import Tables


@dataclass(frozen=True)
class JourneyEntry:
    """One fact; `kind` is an entry kind of the read model (TOUCHPOINT…)."""

    kind: str
    occurred_at_us: int
    recorded_at_us: int
    event_id: str
    event_type: str
    lead_id: str
    anonymous_id: str
    channel: str
    campaign: str
    stage: str
    deal_id: str
    amount: Money | None
    details: dict[str, str]


@dataclass(frozen=True)
class Journey:
    lead_id: str
    lead_ids: list[str]
    anonymous_ids: list[str]
    stage: str
    created_at_us: int | None
    erased_at_us: int | None
    entries: list[JourneyEntry]

    @property
    def erased(self) -> bool:
        return self.erased_at_us is not None


def journey_identity(conn: sa.Connection, tables: Tables) -> IdentityReader:
    ids = customer_journey.identity
    return IdentityReader(
        conn,
        IdentityTables(tables[ids.leads], tables[ids.visitors], tables[ids.touches]),
    )


def customer_journey_of(
    conn: sa.Connection,
    tables: Tables,
    *,
    lead_id: str = "",
    email_digest: str = "",
    first: int = 0,
    limit: int | None = None,
) -> Journey:
    """The person's journey, found by any of its leads or by email.

    By email: the leads captured with the address's keyed hash (an erased person's
    hash is forgotten, so it is not found by email); when several people used it,
    the one captured last. The entries are those from position `first` on in the
    journey's order, `limit` of them at most; the person's fields are over all.
    """
    people = journey_identity(conn, tables)
    leads = people.t.leads
    if email_digest:
        found = list(
            conn.execute(
                sa.select(leads.c.lead_id, leads.c.created_at_us)
                .where(leads.c.email_digest == email_digest)
                .order_by(leads.c.created_at_us.desc(), leads.c.lead_id)
            )
        )
        if not found:
            raise NotFound("no person with this email is known to the read model")
        lead_id = found[0].lead_id
    elif not conn.execute(
        sa.select(leads.c.lead_id).where(leads.c.lead_id == lead_id)
    ).first():
        raise NotFound(f"lead {lead_id} is not known to the read model")
    root = people.root(lead_id)
    members = people.members(root)
    rows = {row.lead_id: row for row in people.lead_rows(members)}
    anonymous_ids = people.anonymous_ids(members)
    digests = sorted({r.email_digest for r in rows.values() if r.email_digest})
    t = tables[customer_journey.entries]
    owned = sa.or_(
        sa.and_(t.c.owner_kind == LEAD, t.c.owner_key.in_(members)),
        sa.and_(t.c.owner_kind == VISITOR, t.c.owner_key.in_(anonymous_ids)),
        sa.and_(t.c.owner_kind == customer_journey.EMAIL, t.c.owner_key.in_(digests)),
    )
    entries = [
        _journey_entry(row)
        for row in conn.execute(
            sa.select(t)
            .where(owned)
            .order_by(
                t.c.occurred_at_us,
                t.c.recorded_at_us,
                t.c.sequence,
                t.c.entry_id,
                t.c.owner_kind,
                t.c.owner_key,
            )
            .offset(first)
            .limit(limit)
        )
    ]
    root_row = rows.get(root)
    stage = root_row.stage if root_row is not None else "lead"
    won = sa.select(t.c.entry_id).where(owned, t.c.kind == customer_journey.DEAL_WON)
    if conn.execute(won.limit(1)).first() is not None:
        stage = "customer"
    created = [r.created_at_us for r in rows.values() if r.created_at_us is not None]
    erased = [r.erased_at_us for r in rows.values() if r.erased_at_us is not None]
    return Journey(
        lead_id=root,
        lead_ids=members,
        anonymous_ids=anonymous_ids,
        stage=stage,
        created_at_us=min(created) if created else None,
        erased_at_us=min(erased) if erased else None,
        entries=entries,
    )


def _journey_entry(row: Any) -> JourneyEntry:
    details: dict[str, str] = json.loads(row.details)
    return JourneyEntry(
        kind=row.kind,
        occurred_at_us=int(row.occurred_at_us),
        recorded_at_us=int(row.recorded_at_us),
        event_id=row.entry_id,
        event_type=row.event_type,
        lead_id=row.owner_key if row.owner_kind == LEAD else "",
        anonymous_id=row.owner_key if row.owner_kind == VISITOR else "",
        channel=row.channel,
        campaign=row.campaign,
        stage=row.stage,
        deal_id=row.deal_id,
        amount=Money(int(row.amount_minor), row.currency)
        if row.amount_minor is not None
        else None,
        details=details,
    )
