"""closedloop.insights.v1.InsightsService: questions answered from the read models."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from closedloop.grpckit import paging
from closedloop.grpckit import validation as check
from closedloop.identity import email_digest
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.projections.store import ACTIVE, BUILDING, RETIRED
from closedloop.projections.times import datetime_of
from closedloop.protobuf import timestamp
from closedloop.readmodels import (
    consent_status,
    customer_journey,
    customer_value,
    funnel_by_channel,
    revenue_by_channel,
)
from services.insights import wire
from services.insights.queries.consent_status import consent_status_of
from services.insights.queries.customer_journey import customer_journey_of
from services.insights.queries.customer_value import customer_value_of
from services.insights.queries.funnel_by_channel import funnel_of
from services.insights.queries.periods import closed_window, window
from services.insights.queries.revenue_by_channel import revenue_by_channel_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import grpc

    from closedloop.projections.base import Projection
    from closedloop.readmodels import ReadModel
    from services.insights.readmodels import ReadModels

#: What a query returns, and the response made of it.
Found = TypeVar("Found")
Reply = TypeVar("Reply")

#: Customers per page of GetCustomerValue when neither page_size nor limit is given.
DEFAULT_CUSTOMERS = 50

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InsightsService"].full_name

_STATES = {
    ACTIVE: pb.PROJECTION_STATE_ACTIVE,
    BUILDING: pb.PROJECTION_STATE_BUILDING,
    RETIRED: pb.PROJECTION_STATE_RETIRED,
}


MAX_EMAIL_LENGTH = 254


def _lead_id(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        check.refuse(field, "is not a UUID")
        return str(check.NIL_ID)


def _email(value: str, field: str = "email") -> str:
    if (
        "@" not in value
        or len(value) > MAX_EMAIL_LENGTH
        or any(c.isspace() for c in value.strip())
    ):
        check.refuse(field, "is not a valid email address")
    return value


class InsightsServicer(insights_service_pb2_grpc.InsightsServiceServicer):
    """Reads only the read models: every answer is as fresh as its projection.

    Queries run in a thread, so the event loop never waits on the database.
    """

    def __init__(
        self,
        models: ReadModels,
        *,
        secret_key: bytes,
        installed: dict[str, type[Projection]] | None = None,
        log_head: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self.models = models
        self.secret_key = secret_key
        self.installed = installed or {}
        self.log_head = log_head

    async def _answer(
        self,
        read_model: ReadModel,
        query: Callable[..., Found],
        respond: Callable[[Found], Reply],
        /,
        **kwargs: Any,
    ) -> Reply:
        """`query(conn, tables, **kwargs)` on the read model, then its response."""

        def run() -> Reply:
            with self.models.open(read_model) as (conn, tables):
                found = query(conn, tables, **kwargs)
            return respond(found)

        return await asyncio.to_thread(run)

    def _person(
        self,
        request: pb.GetCustomerJourneyRequest | pb.GetConsentStatusRequest,
        oneof: Literal["person", "subject"],
    ) -> dict[str, str]:
        """The person the `oneof` names: by lead id, or by email's keyed hash; {}."""
        which = request.WhichOneof(oneof)
        if which == "lead_id":
            return {"lead_id": _lead_id(request.lead_id, "lead_id")}
        if which == "email":
            address = _email(request.email)
            return {"email_digest": email_digest(self.secret_key, address)}
        return {}

    async def GetCustomerJourney(  # noqa: N802 - gRPC method name
        self, request: pb.GetCustomerJourneyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCustomerJourneyResponse:
        with check.every_violation():
            person = self._person(request, "person")
            if not person:
                check.refuse("lead_id", "name the person by lead_id or email")
            page = paging.page_request(request)
        return await self._answer(
            customer_journey.READ_MODEL,
            customer_journey_of,
            functools.partial(wire.journey_response, page=page),
            first=page.start,
            limit=page.limit,
            **person,
        )

    async def GetRevenueByChannel(  # noqa: N802
        self, request: pb.GetRevenueByChannelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRevenueByChannelResponse:
        with check.every_violation():
            if not request.model:
                check.refuse("model", "is required (e.g. linear)")
            period = wire.period_of(request.period)
            window(period)
            page = paging.page_request(request)
        group_by = request.group_by or pb.GROUP_BY_CHANNEL
        return await self._answer(
            revenue_by_channel.READ_MODEL,
            revenue_by_channel_of,
            functools.partial(wire.revenue_response, page=page),
            model=request.model,
            period=period,
            conversion=revenue_by_channel.RECOGNIZED
            if request.conversion == pb.CONVERSION_REVENUE_RECOGNIZED
            else revenue_by_channel.WON,
            by_channel=group_by != pb.GROUP_BY_CAMPAIGN,
            by_campaign=group_by != pb.GROUP_BY_CHANNEL,
            by_month=request.by_month,
        )

    async def GetFunnel(  # noqa: N802
        self, request: pb.GetFunnelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetFunnelResponse:
        with check.every_violation():
            period = wire.period_of(request.period)
            window(period)
        touch = request.touch or pb.TOUCH_FIRST
        cohort_stage = request.cohort_stage or pb.COHORT_STAGE_LEAD
        return await self._answer(
            funnel_by_channel.READ_MODEL,
            funnel_of,
            functools.partial(
                wire.funnel_response, touch=touch, cohort_stage=cohort_stage
            ),
            period=period,
            by_last_touch=touch == pb.TOUCH_LAST_BEFORE_LEAD,
            cohort_by_mql=cohort_stage == pb.COHORT_STAGE_MQL,
        )

    async def GetConsentStatus(  # noqa: N802
        self, request: pb.GetConsentStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConsentStatusResponse:
        with check.every_violation():
            subject = self._person(request, "subject")
            page = paging.page_request(request)
        return await self._answer(
            consent_status.READ_MODEL,
            consent_status_of,
            functools.partial(wire.consent_response, page=page),
            include_history=request.include_history,
            **subject,
        )

    async def GetCustomerValue(  # noqa: N802
        self, request: pb.GetCustomerValueRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCustomerValueResponse:
        with check.every_violation():
            if request.limit < 0:
                check.refuse("limit", "must not be negative")
            period = wire.period_of(request.period)
            closed_window(period)
            # limit, the size before paging, is the default page size: not lowered.
            page = paging.page_request(
                request, default_size=max(request.limit, 0) or DEFAULT_CUSTOMERS
            )
        return await self._answer(
            customer_value.READ_MODEL,
            customer_value_of,
            functools.partial(wire.customer_value_response, page=page),
            period=period,
            first=page.start,
            limit=page.limit,
        )

    async def ListProjections(  # noqa: N802
        self, request: pb.ListProjectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProjectionsResponse:
        head = -1
        if self.log_head is not None:
            try:
                head = await asyncio.wait_for(self.log_head(), 2.0)
            except Exception:  # noqa: BLE001 - the log may be away; the rest still answers
                head = -1
        generations = await asyncio.to_thread(self.models.store.generations)
        response = pb.ListProjectionsResponse(log_position=head)
        listed: set[str] = set()
        for g in generations:
            if g.state == RETIRED:
                continue
            listed.add(g.name)
            installed = self.installed.get(g.name)
            response.projections.append(
                pb.ProjectionInfo(
                    name=g.name,
                    version=g.version,
                    generation=g.key.generation,
                    state=_STATES.get(g.state, pb.PROJECTION_STATE_UNSPECIFIED),
                    position=g.position,
                    lag=max(head - g.position, 0) if head >= 0 else -1,
                    parked=g.parked,
                    events_applied=g.events_applied,
                    updated_at=timestamp(datetime_of(int(g.updated_at * 1_000_000))),
                    installed_version=installed.version if installed else 0,
                    last_error=g.last_error,
                )
            )
        for name, cls in sorted(self.installed.items()):
            if name not in listed:
                response.projections.append(
                    pb.ProjectionInfo(
                        name=name,
                        version=cls.version,
                        state=pb.PROJECTION_STATE_NOT_ADDED,
                        lag=head if head >= 0 else -1,
                        installed_version=cls.version,
                    )
                )
        return response
