"""The DealService servicer: validate the request, run the command, answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closedloop.deal.v1 import deal_service_pb2 as pb
from closedloop.deal.v1 import deal_service_pb2_grpc, types_pb2
from closedloop.grpckit import paging, request_meta
from closedloop.grpckit import validation as check
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
    DealStage,
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
    from datetime import datetime

    import grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DealService"].full_name


class DealServicer(deal_service_pb2_grpc.DealServiceServicer):
    """Turns DealService calls into commands; domain errors map to status codes."""

    def __init__(self, deals: Deals) -> None:
        self.deals = deals

    async def OpenDeal(  # noqa: N802 - gRPC method names
        self, request: pb.OpenDealRequest, context: grpc.aio.ServicerContext
    ) -> pb.OpenDealResponse:
        with check.every_violation():
            cmd = OpenDeal(
                lead_id=check.required_id("lead_id", request.lead_id),
                name=check.text("name", request.name, required=True),
                amount=check.kept(
                    check_amount, "amount", check.money(request, "amount")
                ),
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
        with check.every_violation() as checks:
            deal_id = check.required_id("deal_id", request.deal_id)
            stage = check.enum_value(
                "stage", request.stage, types_pb2.DealStage, required=True
            )
            # Only a stage the enum names can be an open one; the rule raises.
            open_stage = (
                DealStage.DISCOVERY
                if checks.refused("stage")
                else check_open_stage(stage_name(stage))
            )
            cmd = ChangeDealStage(
                deal_id=deal_id,
                stage=open_stage,
                occurred_at=check.business_time(request, "occurred_at"),
            )
        deal = await self.deals.change_deal_stage(cmd, request_meta(context))
        return pb.ChangeDealStageResponse(deal=deal_message(deal))

    async def UpdateDealAmount(  # noqa: N802
        self, request: pb.UpdateDealAmountRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateDealAmountResponse:
        with check.every_violation():
            cmd = UpdateDealAmount(
                deal_id=check.required_id("deal_id", request.deal_id),
                amount=check.kept(
                    check_amount, "amount", check.money(request, "amount")
                ),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        deal = await self.deals.update_deal_amount(cmd, request_meta(context))
        return pb.UpdateDealAmountResponse(deal=deal_message(deal))

    async def WinDeal(  # noqa: N802
        self, request: pb.WinDealRequest, context: grpc.aio.ServicerContext
    ) -> pb.WinDealResponse:
        with check.every_violation():
            deal_id = check.required_id("deal_id", request.deal_id)
            amount = (
                check.kept(check_amount, "amount", check.money(request, "amount"))
                if request.HasField("amount")
                else None
            )
            occurred_at = check.business_time(request, "occurred_at")
            cmd = WinDeal(
                deal_id=deal_id,
                amount=amount,
                closed_at=check.business_time(
                    request, "closed_at", default=occurred_at
                ),
            )
        deal = await self.deals.win_deal(cmd, request_meta(context))
        return pb.WinDealResponse(deal=deal_message(deal))

    async def LoseDeal(  # noqa: N802
        self, request: pb.LoseDealRequest, context: grpc.aio.ServicerContext
    ) -> pb.LoseDealResponse:
        with check.every_violation():
            deal_id = check.required_id("deal_id", request.deal_id)
            loss_reason = check.enum_value(
                "loss_reason", request.loss_reason, types_pb2.LossReason
            )
            cmd = LoseDeal(
                deal_id=deal_id,
                reason=check.text("reason", request.reason, max_length=check.MAX_TEXT),
                loss_reason=loss_reason_name(loss_reason),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        deal = await self.deals.lose_deal(cmd, request_meta(context))
        return pb.LoseDealResponse(deal=deal_message(deal))

    async def RecordRevenue(  # noqa: N802
        self, request: pb.RecordRevenueRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordRevenueResponse:
        with check.every_violation() as checks:
            deal_id = check.required_id("deal_id", request.deal_id)
            kind = revenue_kind_name(
                check.enum_value(
                    "kind", request.kind, types_pb2.RevenueKind, required=True
                )
            )
            money = check.money(request, "amount")
            # The sign an amount must have depends on a known kind.
            amount = (
                money
                if checks.refused("kind")
                else check.kept(check_revenue_amount, "amount", money, kind)
            )
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
        deal_id = check.required_id("deal_id", request.deal_id)
        deal = await self.deals.executor.query(lambda: self.deals.get_deal(deal_id))
        return pb.GetDealResponse(deal=deal_message(deal))

    async def ListDealsForLead(  # noqa: N802
        self, request: pb.ListDealsForLeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDealsForLeadResponse:
        with check.every_violation():
            lead_id = check.required_id("lead_id", request.lead_id)
            page = paging.page_request(request)
        deals = await self.deals.executor.query(
            lambda: self.deals.list_deals_for_lead(lead_id)
        )
        listed = page.of(deals)
        return pb.ListDealsForLeadResponse(
            deals=[deal_message(d) for d in listed.items],
            next_page_token=listed.next_page_token,
        )


def _expected_close_at(request: pb.OpenDealRequest) -> datetime | None:
    """A forecast: any valid time from 1990 on, the future included."""
    if not request.HasField("expected_close_at"):
        return None
    return check.time_from_1990("expected_close_at", request.expected_close_at)
