"""customer_journey: every fact of a person's life with us, in business-time order."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from closedloop.consent.v1 import events_pb2 as consent_events
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections import ApplyContext, Event, Projection, ProjectionError
from closedloop.projections.times import micros
from closedloop.protobuf import enum_name
from closedloop.readmodels.customer_journey import (
    CONSENT_GRANTED,
    CONSENT_WITHDRAWN,
    DEAL_AMOUNT_UPDATED,
    DEAL_LOST,
    DEAL_OPENED,
    DEAL_STAGE_CHANGED,
    DEAL_WON,
    EMAIL,
    ERASED,
    LEAD_CAPTURED,
    LEADS_MERGED,
    PREFERENCES_CHANGED,
    READ_MODEL,
    REVENUE_RECOGNIZED,
    STAGE_CHANGED,
    TOUCHPOINT,
    VISITOR_IDENTIFIED,
    entries,
    identity,
)
from closedloop.readmodels.identity import LEAD, VISITOR
from services.projector.projections.identity import (
    Identity,
    channel_name,
    interaction_name,
    recorded_us,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from google.protobuf.message import Message

    from closedloop.common.v1.money_pb2 import Money


def consent_name(enum: Any, prefix: str, number: int) -> str:
    return enum_name(enum, prefix, number)


class CustomerJourney(Projection):
    """A person's touchpoints, stages, consent, deals and revenue, in time order.

    It follows identification (visitors) and merges (duplicate leads), and orders
    by business time, ties in recording order.

    Facts are stored under the lead, visitor or email they were recorded for, so
    the order in which contexts arrive does not matter; the person is put together
    when asked (by lead id, or by the keyed hash of the email from LeadCaptured).
    No personal field is stored: the stream carries them encrypted, and an erasure
    also removes the email hash, so an erased person is found by lead id only.
    """

    name = READ_MODEL.name
    version = READ_MODEL.version
    description = "a person's touchpoints, stages, consent, deals and revenue in order"
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
        lead_events.LeadPersonalDataErased,
        deal_events.DealOpened,
        deal_events.DealStageChanged,
        deal_events.DealAmountUpdated,
        deal_events.DealWon,
        deal_events.DealLost,
        deal_events.RevenueRecognized,
        consent_events.ConsentGranted,
        consent_events.ConsentWithdrawn,
        consent_events.PreferencesChanged,
        consent_events.SubjectErased,
    )
    tables = READ_MODEL.tables

    def apply(self, batch: Sequence[Event], ctx: ApplyContext) -> None:
        people = Identity.of(ctx, identity)
        rows: list[dict[str, Any]] = []
        for event in batch:
            row = self._apply_event(event, people)
            if row is not None:
                rows.append(row)
        people.flush()
        ctx.insert_missing(entries, rows)

    def _apply_event(  # noqa: C901, PLR0911 - one branch per event type
        self, event: Event, people: Identity
    ) -> dict[str, Any] | None:
        m = event.message
        if isinstance(m, lead_events.TouchpointRecorded):
            tp = m.touchpoint
            owner = (LEAD, tp.lead_id) if tp.lead_id else (VISITOR, tp.anonymous_id)
            if not owner[1]:
                raise ProjectionError("a touchpoint without lead or visitor")
            if tp.lead_id:
                people.ensure_leads([tp.lead_id])
            return _entry(
                event,
                owner,
                TOUCHPOINT,
                micros(tp.occurred_at),
                channel=channel_name(tp.channel),
                campaign=tp.campaign,
                details={
                    "touchpoint_id": tp.touchpoint_id,
                    "source": tp.source,
                    "medium": tp.medium,
                    "content": tp.content,
                    "interaction": interaction_name(tp.interaction),
                    "anonymous_id": tp.anonymous_id,
                },
            )
        if isinstance(m, lead_events.LeadCaptured):
            _require(m.lead_id, "lead_id")
            at = micros(m.occurred_at)
            people.capture(m.lead_id, at, m.email_digest)
            people.set_stage(m.lead_id, "lead", at, event.envelope.sequence)
            people.identify(m.anonymous_id, m.lead_id, at)
            return _entry(
                event,
                (LEAD, m.lead_id),
                LEAD_CAPTURED,
                at,
                stage="lead",
                details={
                    "source_system": m.source_system,
                    "anonymous_id": m.anonymous_id,
                },
            )
        if isinstance(m, lead_events.VisitorIdentified):
            at = micros(m.occurred_at)
            people.identify(m.anonymous_id, m.lead_id, at)
            return _entry(
                event,
                (LEAD, m.lead_id),
                VISITOR_IDENTIFIED,
                at,
                details={"anonymous_id": m.anonymous_id},
            )
        stage = _lead_stage(m)
        if stage is not None:
            lead_id, new_stage, details = stage
            at = micros(m.occurred_at)  # type: ignore[attr-defined]
            people.set_stage(lead_id, new_stage, at, event.envelope.sequence)
            return _entry(
                event,
                (LEAD, lead_id),
                STAGE_CHANGED,
                at,
                stage=new_stage,
                deal_id=details.pop("deal_id", ""),
                details=details,
            )
        if isinstance(m, lead_events.LeadsMerged):
            people.merge(m.merged_lead_id, m.surviving_lead_id)
            return _entry(
                event,
                (LEAD, m.surviving_lead_id),
                LEADS_MERGED,
                micros(m.occurred_at),
                details={"merged_lead_id": m.merged_lead_id, "actor": m.actor},
            )
        if isinstance(m, lead_events.LeadMergedInto):
            people.merge(m.merged_lead_id, m.surviving_lead_id)
            people.set_stage(
                m.merged_lead_id,
                "merged",
                micros(m.occurred_at),
                event.envelope.sequence,
            )
            return None
        if isinstance(m, lead_events.LeadPersonalDataErased):
            at = micros(m.occurred_at)
            people.erase(m.lead_id, at)
            return _entry(event, (LEAD, m.lead_id), ERASED, at)
        if isinstance(
            m,
            deal_events.DealOpened
            | deal_events.DealStageChanged
            | deal_events.DealAmountUpdated
            | deal_events.DealWon
            | deal_events.DealLost
            | deal_events.RevenueRecognized,
        ):
            _require(m.lead_id, "lead_id")
            people.ensure_leads([m.lead_id])
            return _deal_entry(event, m)
        return self._consent_entry(event, m, people)

    @staticmethod
    def _consent_entry(
        event: Event, m: Message, people: Identity
    ) -> dict[str, Any] | None:
        if isinstance(m, consent_events.SubjectErased):
            at = micros(m.occurred_at)
            if m.lead_id:
                people.erase(m.lead_id, at)
            return _entry(event, _consent_owner(m.lead_id, m.email_digest), ERASED, at)
        if isinstance(
            m, consent_events.ConsentGranted | consent_events.ConsentWithdrawn
        ):
            granted = isinstance(m, consent_events.ConsentGranted)
            if m.lead_id:
                people.ensure_leads([m.lead_id])
            return _entry(
                event,
                _consent_owner(m.lead_id, m.email_digest),
                CONSENT_GRANTED if granted else CONSENT_WITHDRAWN,
                micros(m.occurred_at),
                channel=enum_name(consent_types.Channel, "CHANNEL_", m.channel)
                or "all",
                details={
                    "change_id": m.change_id,
                    "purpose": enum_name(consent_types.Purpose, "PURPOSE_", m.purpose),
                    "method": enum_name(consent_types.Method, "METHOD_", m.method),
                    "source_system": enum_name(
                        consent_types.SourceSystem, "SOURCE_SYSTEM_", m.source_system
                    ),
                    "legal_basis": enum_name(
                        consent_types.LegalBasis, "LEGAL_BASIS_", m.legal_basis
                    ),
                    "notice_version": m.evidence.notice_version,
                },
            )
        if isinstance(m, consent_events.PreferencesChanged):
            return _entry(
                event,
                _consent_owner(m.lead_id, m.email_digest),
                PREFERENCES_CHANGED,
                micros(m.occurred_at),
                details={
                    "change_id": m.change_id,
                    "preferences": preferences_text(m.preferences),
                },
            )
        return None


def preferences_text(preferences: Sequence[consent_types.ChannelPreferences]) -> str:
    parts = []
    for p in preferences:
        channel = enum_name(consent_types.Channel, "CHANNEL_", p.channel) or "all"
        frequency = enum_name(consent_types.Frequency, "FREQUENCY_", p.frequency)
        parts.append(f"{channel}: {frequency or '-'} [{', '.join(p.topics)}]")
    return "; ".join(parts)


def _require(value: str, field: str) -> None:
    if not value:
        raise ProjectionError(f"{field} is empty")


def _consent_owner(lead_id: str, email_digest: str) -> tuple[str, str]:
    if lead_id:
        return (LEAD, lead_id)
    if email_digest:
        return (EMAIL, email_digest)
    raise ProjectionError("a consent event names neither a lead nor an email digest")


def _lead_stage(m: Message) -> tuple[str, str, dict[str, str]] | None:
    if isinstance(m, lead_events.LeadQualified):
        return m.lead_id, "mql", {"score": str(m.score), "actor": m.actor}
    if isinstance(m, lead_events.LeadAccepted):
        return (
            m.lead_id,
            "sal",
            {
                "owner": m.owner,
                "actor": m.actor,
                "skipped_qualification": str(m.skipped_qualification).lower(),
            },
        )
    if isinstance(m, lead_events.LeadDisqualified):
        reason = enum_name(
            lead_types.DisqualificationReason, "DISQUALIFICATION_REASON_", m.reason
        )
        return m.lead_id, "disqualified", {"reason": reason, "actor": m.actor}
    if isinstance(m, lead_events.LeadReopened):
        return m.lead_id, "lead", {"actor": m.actor}
    if isinstance(m, lead_events.LeadConverted):
        return m.lead_id, "opportunity", {"deal_id": m.deal_id}
    return None


def _deal_entry(event: Event, m: Message) -> dict[str, Any]:
    lead_id: str = m.lead_id  # type: ignore[attr-defined]
    deal_id: str = m.deal_id  # type: ignore[attr-defined]
    owner = (LEAD, lead_id)
    if isinstance(m, deal_events.DealOpened):
        details = {}
        if m.HasField("expected_close_at"):
            details["expected_close_at"] = m.expected_close_at.ToJsonString()
        return _entry(
            event,
            owner,
            DEAL_OPENED,
            micros(m.occurred_at),
            stage="discovery",
            deal_id=deal_id,
            amount=m.amount,
            details=details,
        )
    if isinstance(m, deal_events.DealStageChanged):
        return _entry(
            event,
            owner,
            DEAL_STAGE_CHANGED,
            micros(m.occurred_at),
            stage=_deal_stage(m.stage),
            deal_id=deal_id,
            details={"previous_stage": _deal_stage(m.previous_stage)},
        )
    if isinstance(m, deal_events.DealAmountUpdated):
        return _entry(
            event,
            owner,
            DEAL_AMOUNT_UPDATED,
            micros(m.occurred_at),
            deal_id=deal_id,
            amount=m.amount,
            details={"previous_amount": str(m.previous_amount.minor_units)},
        )
    if isinstance(m, deal_events.DealWon):
        return _entry(
            event,
            owner,
            DEAL_WON,
            micros(m.closed_at),
            stage="won",
            deal_id=deal_id,
            amount=m.amount,
        )
    if isinstance(m, deal_events.DealLost):
        reason = enum_name(deal_types.LossReason, "LOSS_REASON_", m.loss_reason)
        return _entry(
            event,
            owner,
            DEAL_LOST,
            micros(m.occurred_at),
            stage="lost",
            deal_id=deal_id,
            details={"loss_reason": reason},
        )
    assert isinstance(m, deal_events.RevenueRecognized)  # noqa: S101 - the caller checked
    return _entry(
        event,
        owner,
        REVENUE_RECOGNIZED,
        micros(m.recognized_at),
        deal_id=deal_id,
        amount=m.amount,
        details={
            "revenue_id": m.revenue_id,
            "kind": enum_name(deal_types.RevenueKind, "REVENUE_KIND_", m.kind),
        },
    )


def _deal_stage(number: int) -> str:
    return enum_name(deal_types.DealStage, "DEAL_STAGE_", number)


def _entry(
    event: Event,
    owner: tuple[str, str],
    kind: str,
    occurred_at_us: int,
    *,
    channel: str = "",
    campaign: str = "",
    stage: str = "",
    deal_id: str = "",
    amount: Money | None = None,
    details: dict[str, str] | None = None,
) -> dict[str, Any]:
    if not owner[1]:
        raise ProjectionError(f"{event.event_type} names no {owner[0]}")
    return {
        "entry_id": event.event_id,
        "owner_kind": owner[0],
        "owner_key": owner[1],
        "kind": kind,
        "event_type": event.event_type,
        "occurred_at_us": occurred_at_us,
        "recorded_at_us": recorded_us(event),
        "sequence": event.envelope.sequence,
        "channel": channel,
        "campaign": campaign,
        "stage": stage,
        "deal_id": deal_id,
        "amount_minor": amount.minor_units if amount is not None else None,
        "currency": amount.currency if amount is not None else "",
        "details": _details_json(details),
    }


_DETAILS = json.JSONEncoder(sort_keys=True)


def _details_json(details: dict[str, str] | None) -> str:
    """Sorted JSON of the non-empty details (one encoder for every row)."""
    if not details:
        return "{}"
    return _DETAILS.encode({k: v for k, v in details.items() if v})
