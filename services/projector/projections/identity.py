"""Who is who: leads, their visitors, merges and touches, as keyed rows.

Several read models need a person (one lead after identity stitching and merges,
DOMAIN.md section 1). The links arrive from the lead context in its own order, but
interleaved with other contexts in any order, so nothing here is resolved when an
event arrives: each fact is stored under its own key, and a person is resolved from
the facts when needed (`root`, `members`, `touches`). The same facts in any order give
the same people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections.times import micros, micros_of
from closedloop.protobuf import enum_name

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from closedloop.lead.v1 import events_pb2 as lead_events
    from closedloop.projections.base import ApplyContext, Event

LEAD = "lead"
VISITOR = "visitor"
NO_CHANNEL = "unassigned"


@dataclass(frozen=True)
class IdentityTables:
    """Templates of the three tables, named for one projection and version."""

    leads: sa.Table
    visitors: sa.Table
    touches: sa.Table

    def all(self) -> tuple[sa.Table, sa.Table, sa.Table]:
        return (self.leads, self.visitors, self.touches)


def identity_tables(prefix: str, version: int, metadata: sa.MetaData) -> IdentityTables:
    v = f"v{version}"
    leads = sa.Table(
        f"{prefix}_leads_{v}",
        metadata,
        sa.Column("lead_id", sa.String(64), primary_key=True),
        # Business time of LeadCaptured; NULL until it arrived.
        sa.Column("created_at_us", sa.BigInteger, nullable=True),
        sa.Column("merged_into", sa.String(64), nullable=True),
        # Keyed hash of the email (never the email); NULL once erased.
        sa.Column("email_digest", sa.String(128), nullable=True),
        sa.Column("erased_at_us", sa.BigInteger, nullable=True),
        # Lifecycle stage from the lead's own events; `stage_version` is the lead
        # aggregate's version of the event that set it, so a replayed older event
        # never overwrites a newer one.
        sa.Column("stage", sa.String(32), nullable=False, default="lead"),
        sa.Column("stage_at_us", sa.BigInteger, nullable=True),
        sa.Column("stage_version", sa.BigInteger, nullable=False, default=0),
        sa.Index(f"ix_{prefix}_leads_merged_{v}", "merged_into"),
        sa.Index(f"ix_{prefix}_leads_digest_{v}", "email_digest"),
    )
    visitors = sa.Table(
        f"{prefix}_visitor_links_{v}",
        metadata,
        sa.Column("anonymous_id", sa.String(256), primary_key=True),
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("identified_at_us", sa.BigInteger, nullable=False),
        sa.Index(f"ix_{prefix}_visitor_links_lead_{v}", "lead_id"),
    )
    touches = sa.Table(
        f"{prefix}_touches_{v}",
        metadata,
        sa.Column("touchpoint_id", sa.String(64), primary_key=True),
        sa.Column("owner_kind", sa.String(8), nullable=False),
        sa.Column("owner_key", sa.String(256), nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("campaign", sa.String(256), nullable=False),
        sa.Column("interaction", sa.String(32), nullable=False),
        sa.Index(f"ix_{prefix}_touches_owner_{v}", "owner_kind", "owner_key"),
    )
    return IdentityTables(leads, visitors, touches)


@dataclass(frozen=True)
class Touch:
    touchpoint_id: str
    occurred_at_us: int
    recorded_at_us: int
    sequence: int
    channel: str
    campaign: str
    interaction: str

    @property
    def order(self) -> tuple[int, int, int, str]:
        """Business time; equal times in recording order (DOMAIN.md 4.2)."""
        return (
            self.occurred_at_us,
            self.recorded_at_us,
            self.sequence,
            self.touchpoint_id,
        )


def channel_name(number: int) -> str:
    return enum_name(lead_types.Channel, "CHANNEL_", number) or NO_CHANNEL


def interaction_name(number: int) -> str:
    return enum_name(lead_types.Interaction, "INTERACTION_", number)


def recorded_us(event: Event) -> int:
    return micros_of(event.envelope.time)


def touch_row(event: Event, message: lead_events.TouchpointRecorded) -> dict[str, Any]:
    tp = message.touchpoint
    kind, key = (LEAD, tp.lead_id) if tp.lead_id else (VISITOR, tp.anonymous_id)
    return {
        "touchpoint_id": tp.touchpoint_id,
        "owner_kind": kind,
        "owner_key": key,
        "occurred_at_us": micros(tp.occurred_at),
        "recorded_at_us": recorded_us(event),
        "sequence": event.envelope.sequence,
        "channel": channel_name(tp.channel),
        "campaign": tp.campaign,
        "interaction": interaction_name(tp.interaction),
    }


def dialect_insert(conn: sa.Connection, table: sa.Table) -> Any:
    """An INSERT with ON CONFLICT for the connection's database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def least(conn: sa.Connection, a: Any, b: Any) -> Any:
    """The smaller of two SQL values (SQLite's min() with two arguments)."""
    if conn.dialect.name == "postgresql":
        return sa.func.least(a, b)
    return sa.func.min(a, b)


class Identity:
    """Writes and resolves the identity facts of one generation's tables."""

    def __init__(self, conn: sa.Connection, tables: IdentityTables) -> None:
        self.conn = conn
        self.t = tables

    @classmethod
    def of(cls, ctx: ApplyContext, templates: IdentityTables) -> Identity:
        return cls(
            ctx.conn,
            IdentityTables(
                ctx.table(templates.leads),
                ctx.table(templates.visitors),
                ctx.table(templates.touches),
            ),
        )

    # -- writing facts -------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        return dialect_insert(self.conn, table)

    def ensure_leads(self, lead_ids: Iterable[str]) -> None:
        rows = [{"lead_id": lead_id} for lead_id in dict.fromkeys(lead_ids) if lead_id]
        if rows:
            self.conn.execute(self._insert(self.t.leads).on_conflict_do_nothing(), rows)

    def capture(self, lead_id: str, created_at_us: int, email_digest: str) -> None:
        leads = self.t.leads
        statement = self._insert(leads).values(
            lead_id=lead_id,
            created_at_us=created_at_us,
            email_digest=email_digest or None,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["lead_id"],
            set_={
                "created_at_us": statement.excluded.created_at_us,
                # An erasure that arrived first wins: the digest is not kept.
                "email_digest": sa.case(
                    (leads.c.erased_at_us.is_(None), statement.excluded.email_digest),
                    else_=None,
                ),
            },
        )
        self.conn.execute(statement)

    def merge(self, merged_lead_id: str, surviving_lead_id: str) -> None:
        self.ensure_leads([surviving_lead_id])
        statement = self._insert(self.t.leads).values(
            lead_id=merged_lead_id, merged_into=surviving_lead_id
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["lead_id"],
                set_={"merged_into": statement.excluded.merged_into},
            )
        )

    def identify(self, anonymous_id: str, lead_id: str, at_us: int) -> None:
        if not anonymous_id or not lead_id:
            return
        self.ensure_leads([lead_id])
        statement = self._insert(self.t.visitors).values(
            anonymous_id=anonymous_id, lead_id=lead_id, identified_at_us=at_us
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["anonymous_id", "lead_id"],
                set_={
                    "identified_at_us": least(
                        self.conn,
                        self.t.visitors.c.identified_at_us,
                        statement.excluded.identified_at_us,
                    )
                },
            )
        )

    def erase(self, lead_id: str, at_us: int) -> None:
        """Marks the lead erased (earliest erasure wins) and forgets its digest."""
        leads = self.t.leads
        statement = self._insert(leads).values(
            lead_id=lead_id, erased_at_us=at_us, email_digest=None
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["lead_id"],
                set_={
                    "erased_at_us": sa.case(
                        (
                            sa.or_(
                                leads.c.erased_at_us.is_(None),
                                statement.excluded.erased_at_us < leads.c.erased_at_us,
                            ),
                            statement.excluded.erased_at_us,
                        ),
                        else_=leads.c.erased_at_us,
                    ),
                    "email_digest": None,
                },
            )
        )

    def set_stage(self, lead_id: str, stage: str, at_us: int, version: int) -> None:
        """The lead's stage as of its newest event; older or replayed ones lose."""
        leads = self.t.leads
        statement = self._insert(leads).values(
            lead_id=lead_id, stage=stage, stage_at_us=at_us, stage_version=version
        )
        newer = statement.excluded.stage_version > leads.c.stage_version
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["lead_id"],
                set_={
                    "stage": sa.case(
                        (newer, statement.excluded.stage), else_=leads.c.stage
                    ),
                    "stage_at_us": sa.case(
                        (newer, statement.excluded.stage_at_us),
                        else_=leads.c.stage_at_us,
                    ),
                    "stage_version": sa.case(
                        (newer, statement.excluded.stage_version),
                        else_=leads.c.stage_version,
                    ),
                },
            )
        )

    def record_touches(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(
                self._insert(self.t.touches).on_conflict_do_nothing(), rows
            )

    # -- resolving people ----------------------------------------------------------

    def root(self, lead_id: str) -> str:
        """The surviving lead: merged_into followed to its end."""
        leads = self.t.leads
        current, seen = lead_id, {lead_id}
        while True:
            parent = self.conn.execute(
                sa.select(leads.c.merged_into).where(leads.c.lead_id == current)
            ).scalar()
            if not parent or parent in seen:
                return current
            seen.add(parent)
            current = parent

    def roots(self, lead_ids: Iterable[str]) -> set[str]:
        return {self.root(lead_id) for lead_id in set(lead_ids) if lead_id}

    def members(self, root: str) -> list[str]:
        """The root and every lead merged into it, directly or not."""
        leads = self.t.leads
        found, frontier = [root], [root]
        while frontier:
            children = [
                row[0]
                for row in self.conn.execute(
                    sa.select(leads.c.lead_id).where(leads.c.merged_into.in_(frontier))
                )
                if row[0] not in found
            ]
            found.extend(children)
            frontier = children
        return found

    def anonymous_ids(self, lead_ids: Sequence[str]) -> list[str]:
        visitors = self.t.visitors
        return sorted(
            {
                row[0]
                for row in self.conn.execute(
                    sa.select(visitors.c.anonymous_id).where(
                        visitors.c.lead_id.in_(lead_ids)
                    )
                )
            }
        )

    def leads_of_visitor(self, anonymous_id: str) -> list[str]:
        visitors = self.t.visitors
        return [
            row[0]
            for row in self.conn.execute(
                sa.select(visitors.c.lead_id).where(
                    visitors.c.anonymous_id == anonymous_id
                )
            )
        ]

    def touches(
        self, lead_ids: Sequence[str], anonymous_ids: Sequence[str]
    ) -> list[Touch]:
        """The person's touches in journey order."""
        touches = self.t.touches
        owned = sa.or_(
            sa.and_(touches.c.owner_kind == LEAD, touches.c.owner_key.in_(lead_ids)),
            sa.and_(
                touches.c.owner_kind == VISITOR, touches.c.owner_key.in_(anonymous_ids)
            ),
        )
        found = [
            Touch(
                row.touchpoint_id,
                int(row.occurred_at_us),
                int(row.recorded_at_us),
                int(row.sequence),
                row.channel,
                row.campaign,
                row.interaction,
            )
            for row in self.conn.execute(sa.select(touches).where(owned))
        ]
        return sorted(found, key=lambda t: t.order)

    def lead_rows(self, lead_ids: Sequence[str]) -> list[Any]:
        leads = self.t.leads
        return list(
            self.conn.execute(sa.select(leads).where(leads.c.lead_id.in_(lead_ids)))
        )
