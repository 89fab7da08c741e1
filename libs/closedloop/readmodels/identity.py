"""Who is who: the identity tables several read models keep, and a person read back.

Several read models need a person (one lead after identity stitching and merges,
DOMAIN.md section 1). The links arrive from the lead context in its own order, but
interleaved with other contexts in any order, so nothing is resolved when an event
arrives: each fact is stored under its own key, and a person is resolved from the
facts when needed (`root`, `members`, `touches`). The same facts in any order give
the same people. The projector writes the facts; both it and insights resolve them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

#: Owner kinds of a touch (and of a journey entry): a lead, or an anonymous visitor.
LEAD = "lead"
VISITOR = "visitor"


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


#: Ids per IN (...) list: well under every database's limit of bound values.
_CHUNK = 900


def chunks(values: Iterable[str]) -> list[list[str]]:
    """Sorted values cut into IN (...) lists of a safe length."""
    ordered = sorted(values)
    return [ordered[i : i + _CHUNK] for i in range(0, len(ordered), _CHUNK)]


@dataclass
class Person:
    """One person: the surviving lead, the leads merged into it, and their facts."""

    root: str
    members: list[str] = field(default_factory=list)
    anonymous_ids: set[str] = field(default_factory=set)
    touches: list[Touch] = field(default_factory=list)
    #: The rows of the identity leads table, one per member.
    leads: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class _Owned:
    owner: str
    touch: Touch


def _touch(row: Any) -> Touch:
    return Touch(
        row.touchpoint_id,
        int(row.occurred_at_us),
        int(row.recorded_at_us),
        int(row.sequence),
        row.channel,
        row.campaign,
        row.interaction,
    )


def _follow(parent: dict[str, str | None], lead_id: str) -> str:
    current, seen = lead_id, {lead_id}
    while True:
        up = parent.get(current)
        if not up or up in seen:
            return current
        seen.add(up)
        current = up


class IdentityReader:
    """Resolves the people of one generation's identity tables.

    `flush()` runs before every read: a writer that collects facts to send in bulk
    (the projector's Identity) sends them then, so a read sees its own writes.
    """

    def __init__(self, conn: sa.Connection, tables: IdentityTables) -> None:
        self.conn = conn
        self.t = tables

    def flush(self) -> None:
        """Nothing is pending in a reader."""

    def root(self, lead_id: str) -> str:
        """The surviving lead: merged_into followed to its end."""
        self.flush()
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

    def people(  # noqa: C901, PLR0912 - up the merges, down again, then the facts
        self, lead_ids: Iterable[str]
    ) -> dict[str, Person]:
        """The people these leads belong to, by surviving lead, in a few queries.

        What `root`, `members`, `anonymous_ids`, `touches` and `lead_rows` give for
        one person, for many at once: a batch refreshes all it touched together.
        """
        self.flush()
        leads, visitors = self.t.leads, self.t.visitors
        wanted = {lead_id for lead_id in lead_ids if lead_id}
        parent: dict[str, str | None] = {}
        frontier = set(wanted)
        while frontier:
            found = dict(
                self._rows(
                    sa.select(leads.c.lead_id, leads.c.merged_into),
                    leads.c.lead_id,
                    frontier,
                )
            )
            for lead_id in frontier:
                parent[lead_id] = found.get(lead_id)
            frontier = {p for p in found.values() if p and p not in parent}
        roots = {_follow(parent, lead_id) for lead_id in wanted}
        owner = {root: root for root in roots}
        frontier = set(roots)
        while frontier:
            children = self._rows(
                sa.select(leads.c.lead_id, leads.c.merged_into),
                leads.c.merged_into,
                frontier,
            )
            frontier = set()
            for child, up in children:
                if child not in owner:
                    owner[child] = owner[up]
                    frontier.add(child)
        people = {root: Person(root) for root in roots}
        for lead_id, root in owner.items():
            people[root].members.append(lead_id)
        for row in self._rows(sa.select(leads), leads.c.lead_id, set(owner)):
            people[owner[row.lead_id]].leads.append(row)
        visitor_owners: dict[str, set[str]] = {}
        for anonymous_id, lead_id in self._rows(
            sa.select(visitors.c.anonymous_id, visitors.c.lead_id),
            visitors.c.lead_id,
            set(owner),
        ):
            visitor_owners.setdefault(anonymous_id, set()).add(owner[lead_id])
            people[owner[lead_id]].anonymous_ids.add(anonymous_id)
        for kind, touch in self._touches_of(set(owner), set(visitor_owners)):
            if kind == LEAD:
                people[owner[touch.owner]].touches.append(touch.touch)
            else:
                for root in visitor_owners[touch.owner]:
                    people[root].touches.append(touch.touch)
        for person in people.values():
            person.members.sort()
            person.touches.sort(key=lambda t: t.order)
        return people

    def visitor_touches(self, anonymous_ids: Iterable[str]) -> dict[str, list[Touch]]:
        """Each visitor's own touches, in journey order."""
        self.flush()
        found: dict[str, list[Touch]] = {a: [] for a in anonymous_ids}
        for _, owned in self._touches_of(set(), set(found)):
            found[owned.owner].append(owned.touch)
        for touches in found.values():
            touches.sort(key=lambda t: t.order)
        return found

    def identified_at(self, anonymous_ids: Iterable[str]) -> dict[str, int]:
        """When each visitor was first identified (absent: never)."""
        self.flush()
        visitors = self.t.visitors
        found: dict[str, int] = {}
        for anonymous_id, at in self._rows(
            sa.select(visitors.c.anonymous_id, visitors.c.identified_at_us),
            visitors.c.anonymous_id,
            set(anonymous_ids),
        ):
            found[anonymous_id] = min(found.get(anonymous_id, at), at)
        return found

    def _rows(
        self, query: sa.Select[Any], column: sa.ColumnElement[Any], values: set[str]
    ) -> list[Any]:
        """The rows whose `column` is one of `values`, asked in chunks."""
        ordered = sorted(values)
        rows: list[Any] = []
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            rows.extend(self.conn.execute(query.where(column.in_(chunk))))
        return rows

    def _touches_of(
        self, lead_ids: set[str], anonymous_ids: set[str]
    ) -> list[tuple[str, _Owned]]:
        touches = self.t.touches
        found: list[tuple[str, _Owned]] = []
        for kind, keys in ((LEAD, lead_ids), (VISITOR, anonymous_ids)):
            query = sa.select(touches).where(touches.c.owner_kind == kind)
            found.extend(
                (kind, _Owned(row.owner_key, _touch(row)))
                for row in self._rows(query, touches.c.owner_key, keys)
            )
        return found

    def members(self, root: str) -> list[str]:
        """The root and every lead merged into it, directly or not."""
        self.flush()
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
        self.flush()
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

    def leads_of_visitors(self, anonymous_ids: Iterable[str]) -> set[str]:
        self.flush()
        visitors = self.t.visitors
        return {
            row[0]
            for row in self._rows(
                sa.select(visitors.c.lead_id),
                visitors.c.anonymous_id,
                set(anonymous_ids),
            )
        }

    def leads_of_visitor(self, anonymous_id: str) -> list[str]:
        self.flush()
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
        self.flush()
        touches = self.t.touches
        owned = sa.or_(
            sa.and_(touches.c.owner_kind == LEAD, touches.c.owner_key.in_(lead_ids)),
            sa.and_(
                touches.c.owner_kind == VISITOR, touches.c.owner_key.in_(anonymous_ids)
            ),
        )
        found = [
            _touch(row) for row in self.conn.execute(sa.select(touches).where(owned))
        ]
        return sorted(found, key=lambda t: t.order)

    def lead_rows(self, lead_ids: Sequence[str]) -> list[Any]:
        self.flush()
        leads = self.t.leads
        return list(
            self.conn.execute(sa.select(leads).where(leads.c.lead_id.in_(lead_ids)))
        )
