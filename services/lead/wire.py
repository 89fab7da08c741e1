"""The one place where lead domain events meet their closedloop.lead.v1 messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.lead.v1 import events_pb2, lead_service_pb2, types_pb2
from closedloop.protobuf import enum_number, timestamp
from services.lead.domain import (
    EmailClaim,
    Lead,
    Touchpoint,
    TouchpointOwner,
    Visitor,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message


SOURCE = "/closedloop/lead"


def channel_number(channel: str) -> int:
    return enum_number(types_pb2.Channel, "CHANNEL_", channel)


def interaction_number(interaction: str) -> int:
    return enum_number(types_pb2.Interaction, "INTERACTION_", interaction)


def touchpoint_message(tp: Touchpoint) -> types_pb2.Touchpoint:
    """Also takes a TouchpointRecorded event, which has the same fields."""
    return types_pb2.Touchpoint(
        touchpoint_id=str(tp.touchpoint_id),
        anonymous_id=tp.anonymous_id,
        lead_id=str(tp.lead_id) if tp.lead_id else "",
        channel=channel_number(tp.channel),  # type: ignore[arg-type]
        source=tp.source,
        medium=tp.medium,
        campaign=tp.campaign,
        content=tp.content,
        interaction=interaction_number(tp.interaction),  # type: ignore[arg-type]
        occurred_at=timestamp(tp.occurred_at),
        attributes=tp.attributes,
    )


def lead_message(lead: Lead) -> lead_service_pb2.Lead:
    return lead_service_pb2.Lead(
        lead_id=str(lead.id),
        email=lead.email,
        name=lead.name,
        company=lead.company,
        source_system=lead.source_system,
        stage=enum_number(types_pb2.LeadStage, "LEAD_STAGE_", lead.stage),  # type: ignore[arg-type]
        score=lead.score,
        qualification_reason=lead.qualification_reason,
        owner=lead.owner,
        disqualification_reason=enum_number(  # type: ignore[arg-type]
            types_pb2.DisqualificationReason,
            "DISQUALIFICATION_REASON_",
            lead.disqualification_reason,
        ),
        disqualification_detail=lead.disqualification_detail,
        anonymous_ids=lead.anonymous_ids,
        merged_lead_ids=[str(i) for i in lead.merged_lead_ids],
        merged_into_lead_id=str(lead.merged_into) if lead.merged_into else "",
        created_at=timestamp(lead.created_at),
        stage_changed_at=timestamp(lead.stage_changed_at),
        version=lead.version,
        deal_ids=[str(i) for i in lead.deal_ids],
        erased=lead.erased,
    )


# -- domain event -> message -----------------------------------------------------


def to_message(event: Any) -> Message | None:  # noqa: C901, PLR0911, PLR0912 - a branch per type
    """The published form of a stored event; None for the service's own bookkeeping."""
    if isinstance(event, TouchpointOwner.TouchpointRecorded):
        return events_pb2.TouchpointRecorded(touchpoint=touchpoint_message(event))
    if isinstance(event, Visitor.FirstSeen):
        return events_pb2.VisitorFirstSeen(
            anonymous_id=event.anonymous_id, occurred_at=timestamp(event.occurred_at)
        )
    lead_id = str(event.originator_id)
    if isinstance(event, Lead.Captured):
        return events_pb2.LeadCaptured(
            lead_id=lead_id,
            email=event.email,
            name=event.name,
            company=event.company,
            source_system=event.source_system,
            anonymous_id=event.anonymous_id,
            occurred_at=timestamp(event.occurred_at),
            email_digest=event.email_digest,
        )
    if isinstance(event, Lead.VisitorIdentified):
        return events_pb2.VisitorIdentified(
            lead_id=lead_id,
            anonymous_id=event.anonymous_id,
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.Qualified):
        return events_pb2.LeadQualified(
            lead_id=lead_id,
            score=event.score,
            reason=event.reason,
            actor=event.actor,
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.Accepted):
        return events_pb2.LeadAccepted(
            lead_id=lead_id,
            owner=event.owner,
            skipped_qualification=event.skipped_qualification,
            actor=event.actor,
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.Disqualified):
        return events_pb2.LeadDisqualified(
            lead_id=lead_id,
            reason=enum_number(  # type: ignore[arg-type]
                types_pb2.DisqualificationReason,
                "DISQUALIFICATION_REASON_",
                event.reason,
            ),
            detail=event.detail,
            actor=event.actor,
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.Reopened):
        return events_pb2.LeadReopened(
            lead_id=lead_id,
            reason=event.reason,
            actor=event.actor,
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.DuplicateMerged):
        return events_pb2.LeadsMerged(
            surviving_lead_id=lead_id,
            merged_lead_id=str(event.merged_lead_id),
            actor=event.actor,
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.MergedInto):
        return events_pb2.LeadMergedInto(
            merged_lead_id=lead_id,
            surviving_lead_id=str(event.surviving_lead_id),
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.Converted):
        return events_pb2.LeadConverted(
            lead_id=lead_id,
            deal_id=str(event.deal_id),
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Lead.PersonalDataErased):
        return events_pb2.LeadPersonalDataErased(
            lead_id=lead_id, occurred_at=timestamp(event.occurred_at)
        )
    if isinstance(event, EmailClaim.Event):
        return None
    msg = f"no wire mapping for {type(event).__qualname__}"
    raise TypeError(msg)
