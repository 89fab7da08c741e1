"""The DealService servicer: validate the request, run the command, answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from closedloop.deal.v1 import deal_service_pb2 as pb
from closedloop.deal.v1 import deal_service_pb2_grpc, types_pb2
from closedloop.errors import InvalidArgument
from closedloop.grpckit import request_meta
from closedloop.grpckit import validation as check
from closedloop.money import Money
from services.deal.application import (
    ChangeDealStage,
    Deals,
    LoseDeal,
    OpenDeal,
    RecordRevenue,
    UpdateDealAmount,
    WinDeal,
)
from services.deal.domain import (
    check_amount,
    check_open_stage,
    check_revenue_amount,
)
from services.deal.wire import (
    deal_message,
    loss_reason_name,
    revenue_kind_name,
    stage_name,
)

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DealService"].full_name


class DealServicer(deal_service_pb2_grpc.DealServiceServicer):
    """Turns DealService calls into commands; domain errors map to status codes."""

    def __init__(self, deals: Deals) -> None:
        self.deals = deals

    async def OpenDeal(  # noqa: N802 - gRPC method names
        self, request: pb.OpenDealRequest, context: grpc.aio.ServicerContext
    ) -> pb.OpenDealResponse:
        cmd = OpenDeal(
            lead_id=_id("lead_id", request.lead_id),
            name=check.text("name", request.name, required=True),
            amount=check_amount("amount", _money(request, "amount")),
            expected_close_at=_expected_close_at(request),
            occurred_at=check.business_time(request, "occurred_at"),
            idempotency_key=check.text(
                "idempotency_key", request.idempotency_key, max_length=check.MAX_KEY
            ),
        )
        deal, created = await self.deals.open_deal(cmd, request_meta(context))
        return pb.OpenDealResponse(deal=deal_message(deal), created=created)

    async def ChangeDealStage(  # noqa: N802
        self, request: pb.ChangeDealStageRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangeDealStageResponse:
        deal_id = _id("deal_id", request.deal_id)
        check.enum_value("stage", request.stage, types_pb2.DealStage, required=True)
        cmd = ChangeDealStage(
            deal_id=deal_id,
            stage=check_open_stage(stage_name(request.stage)),
            occurred_at=check.business_time(request, "occurred_at"),
        )
        deal = await self.deals.change_deal_stage(cmd, request_meta(context))
        return pb.ChangeDealStageResponse(deal=deal_message(deal))

    async def UpdateDealAmount(  # noqa: N802
        self, request: pb.UpdateDealAmountRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateDealAmountResponse:
        cmd = UpdateDealAmount(
            deal_id=_id("deal_id", request.deal_id),
            amount=check_amount("amount", _money(request, "amount")),
            occurred_at=check.business_time(request, "occurred_at"),
        )
        deal = await self.deals.update_deal_amount(cmd, request_meta(context))
        return pb.UpdateDealAmountResponse(deal=deal_message(deal))

    async def WinDeal(  # noqa: N802
        self, request: pb.WinDealRequest, context: grpc.aio.ServicerContext
    ) -> pb.WinDealResponse:
        deal_id = _id("deal_id", request.deal_id)
        amount = (
            check_amount("amount", _money(request, "amount"))
            if request.HasField("amount")
            else None
        )
        occurred_at = check.business_time(request, "occurred_at")
        cmd = WinDeal(
            deal_id=deal_id,
            amount=amount,
            closed_at=check.business_time(request, "closed_at", default=occurred_at),
        )
        deal = await self.deals.win_deal(cmd, request_meta(context))
        return pb.WinDealResponse(deal=deal_message(deal))

    async def LoseDeal(  # noqa: N802
        self, request: pb.LoseDealRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoseDealResponse:
        deal_id = _id("deal_id", request.deal_id)
        check.enum_value("loss_reason", request.loss_reason, types_pb2.LossReason)
        cmd = LoseDeal(
            deal_id=deal_id,
            reason=check.text("reason", request.reason, max_length=check.MAX_TEXT),
            loss_reason=loss_reason_name(request.loss_reason),
            occurred_at=check.business_time(request, "occurred_at"),
        )
        deal = await self.deals.lose_deal(cmd, request_meta(context))
        return pb.LoseDealResponse(deal=deal_message(deal))

    async def RecordRevenue(  # noqa: N802
        self, request: pb.RecordRevenueRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordRevenueResponse:
        deal_id = _id("deal_id", request.deal_id)
        check.enum_value("kind", request.kind, types_pb2.RevenueKind, required=True)
        kind = revenue_kind_name(request.kind)
        amount = check_revenue_amount("amount", _money(request, "amount"), kind)
        occurred_at = check.business_time(request, "occurred_at")
        cmd = RecordRevenue(
            deal_id=deal_id,
            amount=amount,
            kind=kind,
            recognized_at=check.business_time(
                request, "recognized_at", default=occurred_at
            ),
            idempotency_key=check.text(
                "idempotency_key", request.idempotency_key, max_length=check.MAX_KEY
            ),
        )
        result = await self.deals.record_revenue(cmd, request_meta(context))
        return pb.RecordRevenueResponse(
            revenue_id=str(result.revenue_id),
            created=result.created,
            deal=deal_message(result.deal),
        )

    async def GetDeal(  # noqa: N802
        self, request: pb.GetDealRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDealResponse:
        deal_id = _id("deal_id", request.deal_id)
        deal = await self.deals.executor.query(lambda: self.deals.get_deal(deal_id))
        return pb.GetDealResponse(deal=deal_message(deal))

    async def ListDealsForLead(  # noqa: N802
        self, request: pb.ListDealsForLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDealsForLeadResponse:
        lead_id = _id("lead_id", request.lead_id)
        deals = await self.deals.executor.query(
            lambda: self.deals.list_deals_for_lead(lead_id)
        )
        return pb.ListDealsForLeadResponse(deals=[deal_message(d) for d in deals])


def _id(field: str, value: str) -> uuid.UUID:
    found = check.identifier(field, value)
    assert found is not None  # noqa: S101 - required=True guarantees it
    return found


def _money(request: Message, field: str) -> Money:
    """The request's Money field; a required field left unset is INVALID_ARGUMENT."""
    if not request.HasField(field):
        raise InvalidArgument(field, "is required")
    value = getattr(request, field)
    return Money(value.minor_units, value.currency)


def _expected_close_at(request: pb.OpenDealRequest) -> datetime | None:
    """A forecast: any valid time from 1990 on, the future included."""
    if not request.HasField("expected_close_at"):
        return None
    try:
        when = request.expected_close_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument("expected_close_at", "is not a valid timestamp") from None
    if when < check.EARLIEST:
        raise InvalidArgument("expected_close_at", "lies before 1990")
    return when
