"""The LeadService servicer: validate the request, run the command, answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closedloop.grpckit import paging, request_meta
from closedloop.grpckit import validation as check
from closedloop.lead.v1 import lead_service_pb2 as pb
from closedloop.lead.v1 import lead_service_pb2_grpc, types_pb2
from closedloop.protobuf import enum_name
from services.lead.application import (
    AcceptLead,
    CaptureLead,
    DisqualifyLead,
    Leads,
    MergeLeads,
    QualifyLead,
    RecordTouchpoint,
    ReopenLead,
)
from services.lead.channels import default_channel
from services.lead.wire import (
    channel_number,
    lead_message,
    touchpoint_message,
)

if TYPE_CHECKING:
    import grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LeadService"].full_name
MAX_SCORE = 1_000_000


class LeadServicer(lead_service_pb2_grpc.LeadServiceServicer):
    """Turns LeadService calls into commands; domain errors map to status codes."""

    def __init__(self, leads: Leads) -> None:
        self.leads = leads

    async def RecordTouchpoint(  # noqa: N802 - gRPC method names
        self, request: pb.RecordTouchpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordTouchpointResponse:
        with check.every_violation() as checks:
            lead_id = check.identifier("lead_id", request.lead_id, required=False)
            anonymous_id = check.text("anonymous_id", request.anonymous_id)
            if (lead_id is None) == (not anonymous_id) and not checks.refused(
                "lead_id", "anonymous_id"
            ):
                check.refuse(
                    "anonymous_id", "give exactly one of anonymous_id and lead_id"
                )
            channel_code = check.enum_value(
                "channel", request.channel, types_pb2.Channel
            )
            interaction_code = check.enum_value(
                "interaction", request.interaction, types_pb2.Interaction
            )
            source = check.text("source", request.source)
            medium = check.text("medium", request.medium)
            channel = enum_name(types_pb2.Channel, "CHANNEL_", channel_code) or str(
                default_channel(source, medium)
            )
            cmd = RecordTouchpoint(
                anonymous_id=anonymous_id,
                lead_id=lead_id,
                channel=channel,
                source=source,
                medium=medium,
                campaign=check.text("campaign", request.campaign),
                content=check.text("content", request.content),
                interaction=enum_name(
                    types_pb2.Interaction, "INTERACTION_", interaction_code
                )
                or "other",
                occurred_at=check.business_time(request, "occurred_at"),
                attributes=check.attributes("attributes", request.attributes),
                idempotency_key=check.text(
                    "idempotency_key", request.idempotency_key, max_length=check.MAX_KEY
                ),
            )
        result = await self.leads.record_touchpoint(cmd, request_meta(context))
        return pb.RecordTouchpointResponse(
            touchpoint_id=str(result.touchpoint_id),
            channel=channel_number(result.channel),  # type: ignore[arg-type]
            created=result.created,
        )

    async def CaptureLead(  # noqa: N802
        self, request: pb.CaptureLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.CaptureLeadResponse:
        with check.every_violation():
            cmd = CaptureLead(
                email=check.email("email", request.email),
                name=check.text("name", request.name),
                company=check.text("company", request.company),
                source_system=check.text("source_system", request.source_system),
                anonymous_id=check.text("anonymous_id", request.anonymous_id),
                occurred_at=check.business_time(request, "occurred_at"),
                idempotency_key=check.text(
                    "idempotency_key", request.idempotency_key, max_length=check.MAX_KEY
                ),
            )
        lead, created = await self.leads.capture_lead(cmd, request_meta(context))
        return pb.CaptureLeadResponse(lead=lead_message(lead), created=created)

    async def QualifyLead(  # noqa: N802
        self, request: pb.QualifyLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.QualifyLeadResponse:
        with check.every_violation():
            if not 0 <= request.score <= MAX_SCORE:
                check.refuse("score", f"must lie between 0 and {MAX_SCORE}")
            cmd = QualifyLead(
                lead_id=check.required_id("lead_id", request.lead_id),
                score=request.score,
                reason=check.text("reason", request.reason, max_length=check.MAX_TEXT),
                actor=check.text("actor", request.actor),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        lead = await self.leads.qualify_lead(cmd, request_meta(context))
        return pb.QualifyLeadResponse(lead=lead_message(lead))

    async def AcceptLead(  # noqa: N802
        self, request: pb.AcceptLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.AcceptLeadResponse:
        with check.every_violation():
            cmd = AcceptLead(
                lead_id=check.required_id("lead_id", request.lead_id),
                owner=check.text("owner", request.owner, required=True),
                skip_qualification=request.skip_qualification,
                actor=check.text("actor", request.actor),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        lead = await self.leads.accept_lead(cmd, request_meta(context))
        return pb.AcceptLeadResponse(lead=lead_message(lead))

    async def DisqualifyLead(  # noqa: N802
        self, request: pb.DisqualifyLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisqualifyLeadResponse:
        with check.every_violation():
            reason = check.enum_value(
                "reason",
                request.reason,
                types_pb2.DisqualificationReason,
                required=True,
            )
            cmd = DisqualifyLead(
                lead_id=check.required_id("lead_id", request.lead_id),
                reason=enum_name(
                    types_pb2.DisqualificationReason, "DISQUALIFICATION_REASON_", reason
                ),
                detail=check.text("detail", request.detail, max_length=check.MAX_TEXT),
                actor=check.text("actor", request.actor),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        lead = await self.leads.disqualify_lead(cmd, request_meta(context))
        return pb.DisqualifyLeadResponse(lead=lead_message(lead))

    async def ReopenLead(  # noqa: N802
        self, request: pb.ReopenLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReopenLeadResponse:
        with check.every_violation():
            cmd = ReopenLead(
                lead_id=check.required_id("lead_id", request.lead_id),
                reason=check.text("reason", request.reason, max_length=check.MAX_TEXT),
                actor=check.text("actor", request.actor),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        lead = await self.leads.reopen_lead(cmd, request_meta(context))
        return pb.ReopenLeadResponse(lead=lead_message(lead))

    async def MergeLeads(  # noqa: N802
        self, request: pb.MergeLeadsRequest, context: grpc.aio.ServicerContext
    ) -> pb.MergeLeadsResponse:
        with check.every_violation() as checks:
            surviving = check.required_id(
                "surviving_lead_id", request.surviving_lead_id
            )
            merged = check.required_id("merged_lead_id", request.merged_lead_id)
            if surviving == merged and not checks.refused("surviving_lead_id"):
                check.refuse("merged_lead_id", "a lead cannot be merged into itself")
            cmd = MergeLeads(
                surviving_lead_id=surviving,
                merged_lead_id=merged,
                actor=check.text("actor", request.actor),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        lead = await self.leads.merge_leads(cmd, request_meta(context))
        return pb.MergeLeadsResponse(surviving_lead=lead_message(lead))

    async def GetLead(  # noqa: N802
        self, request: pb.GetLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetLeadResponse:
        lead_id = check.required_id("lead_id", request.lead_id)
        lead = await self.leads.executor.query(lambda: self.leads.get_lead(lead_id))
        return pb.GetLeadResponse(lead=lead_message(lead))

    async def GetJourney(  # noqa: N802
        self, request: pb.GetJourneyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJourneyResponse:
        with check.every_violation():
            lead_id = check.required_id("lead_id", request.lead_id)
            page = paging.page_request(request)
        lead, touchpoints = await self.leads.executor.query(
            lambda: self.leads.get_journey(lead_id)
        )
        journey = page.of(touchpoints)
        return pb.GetJourneyResponse(
            lead_id=str(lead.id),
            touchpoints=[touchpoint_message(t) for t in journey.items],
            next_page_token=journey.next_page_token,
        )

    async def FindLeadByEmail(  # noqa: N802
        self, request: pb.FindLeadByEmailRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindLeadByEmailResponse:
        email = check.email("email", request.email)
        lead = await self.leads.executor.query(
            lambda: self.leads.find_lead_by_email(email)
        )
        return pb.FindLeadByEmailResponse(lead=lead_message(lead))
