"""consent_status: what each subject allows now, per purpose and channel, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from closedloop.consent.v1 import events_pb2 as consent_events
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.projections import ApplyContext, Event, Projection, ProjectionError
from closedloop.projections.times import micros, micros_of
from closedloop.protobuf import enum_name
from closedloop.readmodels.consent_status import (
    ALL,
    ERASED,
    EVERY_CHANNEL,
    GRANTED,
    PREFERENCES,
    READ_MODEL,
    WITHDRAWN,
    change_of,
    changes,
    decisions,
    lead_digests,
    states,
    subjects,
)
from services.projector.projections.customer_journey import preferences_text

if TYPE_CHECKING:
    from collections.abc import Sequence


def _name(enum: Any, prefix: str, number: int) -> str:
    return enum_name(enum, prefix, number)


class ConsentStatus(Projection):
    """Current consent per subject, purpose and channel, with the audit trail.

    The audit trail keeps every change as the consent service published it, minus
    the personal fields (email, request origin, free text), which stay encrypted on
    the stream. The state of each pair is folded from the trail after every batch,
    by business time with ties in recording order, so it does not depend on when a
    change arrived: an imported change from last year lands in its place.
    """

    name = READ_MODEL.name
    version = READ_MODEL.version
    description = "current consent per subject, purpose and channel; audit trail"
    handles = (
        consent_events.ConsentGranted,
        consent_events.ConsentWithdrawn,
        consent_events.PreferencesChanged,
        consent_events.SubjectErased,
        lead_events.LeadCaptured,
    )
    tables = READ_MODEL.tables

    def apply(self, batch: Sequence[Event], ctx: ApplyContext) -> None:
        rows: list[dict[str, Any]] = []
        dirty: set[str] = set()
        for event in batch:
            m = event.message
            if isinstance(m, lead_events.LeadCaptured):
                if m.lead_id and m.email_digest:
                    ctx.insert_missing(
                        lead_digests,
                        [{"lead_id": m.lead_id, "email_digest": m.email_digest}],
                    )
                continue
            row = change_row(event)
            rows.append(row)
            dirty.add(row["subject_aggregate_id"])
            lead_id = row["lead_id"]
            self._subject(ctx, row, lead_id)
        ctx.insert_missing(changes, rows)
        for subject in sorted(dirty):
            refresh(ctx, subject)

    @staticmethod
    def _subject(ctx: ApplyContext, row: dict[str, Any], lead_id: str) -> None:
        erased = row["occurred_at_us"] if row["kind"] == ERASED else None
        table = ctx.table(subjects)
        statement = ctx.insert(subjects).values(
            subject_aggregate_id=row["subject_aggregate_id"],
            lead_id=lead_id,
            email_digest="" if lead_id else row["email_digest"],
            erased_at_us=erased,
        )
        earlier = sa.or_(
            table.c.erased_at_us.is_(None),
            statement.excluded.erased_at_us < table.c.erased_at_us,
        )
        ctx.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["subject_aggregate_id"],
                set_={
                    "erased_at_us": sa.case(
                        (
                            sa.and_(
                                statement.excluded.erased_at_us.is_not(None), earlier
                            ),
                            statement.excluded.erased_at_us,
                        ),
                        else_=table.c.erased_at_us,
                    )
                },
            )
        )


def refresh(ctx: ApplyContext, subject: str) -> None:
    """The subject's states, folded again from its whole trail."""
    trail = ctx.table(changes)
    history = [
        change_of(row)
        for row in ctx.conn.execute(
            sa.select(trail).where(trail.c.subject_aggregate_id == subject)
        )
    ]
    table = ctx.table(states)
    ctx.conn.execute(table.delete().where(table.c.subject_aggregate_id == subject))
    rows = [
        {
            "subject_aggregate_id": subject,
            "purpose": d.purpose,
            "channel": d.channel,
            "state": d.state,
            "decided_by": d.decided_by.change_id if d.decided_by else "",
            "decided_at_us": d.decided_by.occurred_at_us if d.decided_by else None,
        }
        for d in decisions(history)
    ]
    if rows:
        ctx.conn.execute(table.insert(), rows)


def change_row(event: Event) -> dict[str, Any]:
    m = event.message
    if not isinstance(
        m,
        consent_events.ConsentGranted
        | consent_events.ConsentWithdrawn
        | consent_events.PreferencesChanged
        | consent_events.SubjectErased,
    ):
        raise ProjectionError(f"not a consent change: {event.event_type}")
    if not m.subject_aggregate_id:
        raise ProjectionError("a consent event without subject_aggregate_id")
    row: dict[str, Any] = {
        "entry_id": event.event_id,
        "subject_aggregate_id": m.subject_aggregate_id,
        "change_id": event.event_id,
        "lead_id": m.lead_id,
        "email_digest": m.email_digest,
        "purpose": "",
        "channel": EVERY_CHANNEL,
        "legal_basis": "",
        "source_system": "",
        "method": "",
        "notice_version": "",
        "notice_hash": "",
        "capture_method": "",
        "preferences": "",
        "occurred_at_us": micros(m.occurred_at),
        "recorded_at_us": micros_of(event.envelope.time),
        "sequence": event.envelope.sequence,
    }
    if isinstance(m, consent_events.SubjectErased):
        row.update(kind=ERASED, purpose=ALL)
        return row
    row["change_id"] = m.change_id or event.event_id
    row["source_system"] = _name(
        consent_types.SourceSystem, "SOURCE_SYSTEM_", m.source_system
    )
    if isinstance(m, consent_events.PreferencesChanged):
        row.update(
            kind=PREFERENCES,
            preferences=preferences_text(m.preferences),
        )
        return row
    row.update(
        kind=GRANTED if isinstance(m, consent_events.ConsentGranted) else WITHDRAWN,
        purpose=_name(consent_types.Purpose, "PURPOSE_", m.purpose),
        channel=_name(consent_types.Channel, "CHANNEL_", m.channel),
        legal_basis=_name(consent_types.LegalBasis, "LEGAL_BASIS_", m.legal_basis)
        or "consent",
        method=_name(consent_types.Method, "METHOD_", m.method),
        notice_version=m.evidence.notice_version,
        notice_hash=m.evidence.notice_hash,
        capture_method=m.evidence.capture_method,
    )
    if not row["purpose"]:
        raise ProjectionError("a consent change without a purpose")
    return row
