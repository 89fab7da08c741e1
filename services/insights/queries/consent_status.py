"""A person's consent records and their fold, from the consent_status read model."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.errors import NotFound
from closedloop.readmodels import consent_status

if TYPE_CHECKING:
    from services.insights.queries import Tables


@dataclass(frozen=True)
class PurposeCount:
    """How many records are in each state for one purpose and channel."""

    purpose: str
    channel: str
    opted_in: int
    opted_out: int
    pending_confirmation: int


@dataclass(frozen=True)
class PairState:
    """A purpose and channel's state (consent_status.OPTED_IN…) and what decided it."""

    purpose: str
    channel: str
    state: str
    decided_by_change_id: str
    decided_at_us: int | None


@dataclass(frozen=True)
class AuditEntry:
    """One change of the audit trail, named as the read model stores it."""

    change_id: str
    kind: str
    purpose: str
    channel: str
    legal_basis: str
    source_system: str
    method: str
    notice_version: str
    notice_hash: str
    capture_method: str
    occurred_at_us: int
    recorded_at_us: int
    preferences: str


@dataclass(frozen=True)
class Subject:
    """One consent record (a lead's or an address's), its states and its trail."""

    subject_aggregate_id: str
    lead_id: str
    erased_at_us: int | None
    states: list[PairState]
    history: list[AuditEntry]

    @property
    def erased(self) -> bool:
        return self.erased_at_us is not None


@dataclass(frozen=True)
class ConsentReport:
    """Either the counts (no person asked for) or a person's subjects and fold."""

    counts: list[PurposeCount] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    effective: list[PairState] = field(default_factory=list)


def consent_status_of(
    conn: sa.Connection,
    tables: Tables,
    *,
    lead_id: str = "",
    email_digest: str = "",
    include_history: bool = False,
) -> ConsentReport:
    """A person's consent records, their states, and their fold together.

    Without a person: the number of records per purpose, channel and state.
    """
    subjects = tables[consent_status.subjects]
    states = tables[consent_status.states]
    trail = tables[consent_status.changes]
    links = tables[consent_status.lead_digests]
    if not lead_id and not email_digest:
        return ConsentReport(counts=_counts(conn, states))
    if lead_id:
        lead_ids = {lead_id}
        digests = {
            row[0]
            for row in conn.execute(
                sa.select(links.c.email_digest).where(links.c.lead_id == lead_id)
            )
        }
        lead_subjects = [
            row[0]
            for row in conn.execute(
                sa.select(subjects.c.subject_aggregate_id).where(
                    subjects.c.lead_id == lead_id
                )
            )
        ]
        digests |= {
            row[0]
            for row in conn.execute(
                sa.select(trail.c.email_digest)
                .where(trail.c.subject_aggregate_id.in_(lead_subjects))
                .distinct()
            )
            if row[0]
        }
    else:
        digests = {email_digest}
        lead_ids = {
            row[0]
            for row in conn.execute(
                sa.select(links.c.lead_id).where(links.c.email_digest == email_digest)
            )
        }
    found = list(
        conn.execute(
            sa.select(subjects)
            .where(
                sa.or_(
                    sa.and_(subjects.c.lead_id != "", subjects.c.lead_id.in_(lead_ids)),
                    sa.and_(
                        subjects.c.lead_id == "", subjects.c.email_digest.in_(digests)
                    ),
                )
            )
            .order_by(subjects.c.lead_id.desc(), subjects.c.subject_aggregate_id)
        )
    )
    if not found:
        raise NotFound("no consent was recorded for this person")
    report = ConsentReport()
    history: list[consent_status.Change] = []
    for subject in found:
        pairs = [
            PairState(
                purpose=row.purpose,
                channel=row.channel,
                state=row.state,
                decided_by_change_id=row.decided_by,
                decided_at_us=row.decided_at_us,
            )
            for row in conn.execute(
                sa.select(states)
                .where(states.c.subject_aggregate_id == subject.subject_aggregate_id)
                .order_by(states.c.purpose, states.c.channel)
            )
        ]
        rows = list(
            conn.execute(
                sa.select(trail)
                .where(trail.c.subject_aggregate_id == subject.subject_aggregate_id)
                .order_by(
                    trail.c.occurred_at_us,
                    trail.c.recorded_at_us,
                    trail.c.sequence,
                    trail.c.change_id,
                )
            )
        )
        history.extend(consent_status.change_of(row) for row in rows)
        report.subjects.append(
            Subject(
                subject_aggregate_id=subject.subject_aggregate_id,
                lead_id=subject.lead_id,
                erased_at_us=subject.erased_at_us,
                states=pairs,
                history=[_audit(row) for row in rows] if include_history else [],
            )
        )
    report.effective.extend(
        PairState(
            purpose=decision.purpose,
            channel=decision.channel,
            state=decision.state,
            decided_by_change_id=decision.decided_by.change_id
            if decision.decided_by
            else "",
            decided_at_us=decision.decided_by.occurred_at_us
            if decision.decided_by
            else None,
        )
        for decision in consent_status.decisions(history)
    )
    return report


def _counts(conn: sa.Connection, states: sa.Table) -> list[PurposeCount]:
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: defaultdict(int)
    )
    for row in conn.execute(
        sa.select(
            states.c.purpose, states.c.channel, states.c.state, sa.func.count()
        ).group_by(states.c.purpose, states.c.channel, states.c.state)
    ):
        counts[(row[0], row[1])][row[2]] = int(row[3])
    return [
        PurposeCount(
            purpose=purpose,
            channel=channel,
            opted_in=by_state.get(consent_status.OPTED_IN, 0),
            opted_out=by_state.get(consent_status.OPTED_OUT, 0),
            pending_confirmation=by_state.get(consent_status.PENDING, 0),
        )
        for (purpose, channel), by_state in sorted(counts.items())
    ]


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(
        change_id=row.change_id,
        kind=row.kind,
        purpose=row.purpose,
        channel=row.channel,
        legal_basis=row.legal_basis,
        source_system=row.source_system,
        method=row.method,
        notice_version=row.notice_version,
        notice_hash=row.notice_hash,
        capture_method=row.capture_method,
        occurred_at_us=int(row.occurred_at_us),
        recorded_at_us=int(row.recorded_at_us),
        preferences=row.preferences,
    )
