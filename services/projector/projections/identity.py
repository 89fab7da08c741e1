"""Identity facts as the projector writes them: touches, links, merges, erasures.

The tables and how a person is resolved from them are the read models' own
(closedloop.readmodels.identity); here is how events become those facts, written
in bulk per batch.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections.base import execute_many
from closedloop.projections.times import micros, micros_of
from closedloop.protobuf import enum_name
from closedloop.readmodels.identity import LEAD, VISITOR, IdentityReader, IdentityTables

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from closedloop.lead.v1 import events_pb2 as lead_events
    from closedloop.projections.base import ApplyContext, Event

NO_CHANNEL = "unassigned"


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


_STATEMENTS: dict[tuple[sa.Table, str, str], Any] = {}


def _statement(conn: sa.Connection, table: sa.Table, op: str) -> Any:
    """Each upsert is built once per table and reused for every batch."""
    key = (table, op, conn.dialect.name)
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = _build(conn, table, op)
    return found


def _build(conn: sa.Connection, table: sa.Table, op: str) -> Any:
    statement = dialect_insert(conn, table)
    excluded = statement.excluded
    c = table.c
    if op in {"ensure", "touch"}:
        return statement.on_conflict_do_nothing()
    if op == "capture":
        return statement.on_conflict_do_update(
            index_elements=["lead_id"],
            set_={
                "created_at_us": excluded.created_at_us,
                # An erasure that arrived first wins: the digest is not kept.
                "email_digest": sa.case(
                    (c.erased_at_us.is_(None), excluded.email_digest), else_=None
                ),
            },
        )
    if op == "merge":
        return statement.on_conflict_do_update(
            index_elements=["lead_id"], set_={"merged_into": excluded.merged_into}
        )
    if op == "identify":
        return statement.on_conflict_do_update(
            index_elements=["anonymous_id", "lead_id"],
            set_={
                "identified_at_us": least(
                    conn, c.identified_at_us, excluded.identified_at_us
                )
            },
        )
    if op == "erase":
        earlier = sa.or_(
            c.erased_at_us.is_(None), excluded.erased_at_us < c.erased_at_us
        )
        return statement.on_conflict_do_update(
            index_elements=["lead_id"],
            set_={
                "erased_at_us": sa.case(
                    (earlier, excluded.erased_at_us), else_=c.erased_at_us
                ),
                "email_digest": None,
            },
        )
    if op == "stage":
        newer = excluded.stage_version > c.stage_version
        return statement.on_conflict_do_update(
            index_elements=["lead_id"],
            set_={
                name: sa.case((newer, excluded[name]), else_=c[name])
                for name in ("stage", "stage_at_us", "stage_version")
            },
        )
    msg = f"unknown identity operation {op}"
    raise ValueError(msg)


#: The order a batch's identity facts are written in. Every operation commutes
#: with the others (an erasure wins over a capture whichever comes first, stages
#: go by version, identification by the earliest time), so the order is only for
#: the rows that must exist first.
_OPS = ("ensure", "capture", "merge", "stage", "erase", "identify", "touch")


class Identity(IdentityReader):
    """Writes and resolves the identity facts of one generation's tables.

    Writes are collected and sent in bulk (one statement per kind) when a batch is
    done or before anything is read back.
    """

    def __init__(self, conn: sa.Connection, tables: IdentityTables) -> None:
        super().__init__(conn, tables)
        self._pending: dict[str, list[dict[str, Any]]] = {op: [] for op in _OPS}
        self._ensured: set[str] = set()

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

    def flush(self) -> None:
        tables = {
            "ensure": self.t.leads,
            "capture": self.t.leads,
            "merge": self.t.leads,
            "stage": self.t.leads,
            "erase": self.t.leads,
            "identify": self.t.visitors,
            "touch": self.t.touches,
        }
        for op in _OPS:
            rows = self._pending[op]
            if rows:
                table = tables[op]
                build = functools.partial(_statement, self.conn, table, op)
                execute_many(self.conn, (table, op), build, rows)
                self._pending[op] = []

    def ensure_leads(self, lead_ids: Iterable[str]) -> None:
        for lead_id in lead_ids:
            if lead_id and lead_id not in self._ensured:
                self._ensured.add(lead_id)
                self._pending["ensure"].append({"lead_id": lead_id})

    def capture(self, lead_id: str, created_at_us: int, email_digest: str) -> None:
        self.ensure_leads([lead_id])
        self._pending["capture"].append(
            {
                "lead_id": lead_id,
                "created_at_us": created_at_us,
                "email_digest": email_digest or None,
            }
        )

    def merge(self, merged_lead_id: str, surviving_lead_id: str) -> None:
        self.ensure_leads([merged_lead_id, surviving_lead_id])
        self._pending["merge"].append(
            {"lead_id": merged_lead_id, "merged_into": surviving_lead_id}
        )

    def identify(self, anonymous_id: str, lead_id: str, at_us: int) -> None:
        if not anonymous_id or not lead_id:
            return
        self.ensure_leads([lead_id])
        self._pending["identify"].append(
            {
                "anonymous_id": anonymous_id,
                "lead_id": lead_id,
                "identified_at_us": at_us,
            }
        )

    def erase(self, lead_id: str, at_us: int) -> None:
        """Marks the lead erased (earliest erasure wins) and forgets its digest."""
        self.ensure_leads([lead_id])
        self._pending["erase"].append(
            {"lead_id": lead_id, "erased_at_us": at_us, "email_digest": None}
        )

    def set_stage(self, lead_id: str, stage: str, at_us: int, version: int) -> None:
        """The lead's stage as of its newest event; older or replayed ones lose."""
        self.ensure_leads([lead_id])
        self._pending["stage"].append(
            {
                "lead_id": lead_id,
                "stage": stage,
                "stage_at_us": at_us,
                "stage_version": version,
            }
        )

    def record_touches(self, rows: Sequence[dict[str, Any]]) -> None:
        self._pending["touch"].extend(rows)
