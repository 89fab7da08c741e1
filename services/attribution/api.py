"""The AttributionService servicer: validate the request, run it, answer."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from closedloop.attribution.v1 import attribution_service_pb2 as pb
from closedloop.attribution.v1 import attribution_service_pb2_grpc
from closedloop.grpckit import paging, request_meta
from closedloop.grpckit import validation as check
from services.attribution.application import Attributions
from services.attribution.facts import RecordSpend, SpendFilter
from services.attribution.rules import (
    DATA_DRIVEN_MODELS,
    check_channel,
    check_model,
    check_period,
    check_spend_amount,
)
from services.attribution.views import spend_totals
from services.attribution.wire import (
    channel_model_message,
    deal_attribution_message,
    money_message,
    spend_message,
    spend_messages,
    totals_messages,
)

if TYPE_CHECKING:
    from datetime import datetime

    import grpc
    from google.protobuf.message import Message

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AttributionService"].full_name


class AttributionServicer(attribution_service_pb2_grpc.AttributionServiceServicer):
    """Reads credits and trained models, trains on request, records spend.

    Crediting itself is driven by the deal events, not by calls: this API reads
    what was credited and published.
    """

    def __init__(self, attributions: Attributions) -> None:
        self.attributions = attributions

    async def GetDealAttribution(  # noqa: N802 - gRPC method names
        self, request: pb.GetDealAttributionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDealAttributionResponse:
        with check.every_violation():
            deal_id = check.required_id("deal_id", request.deal_id)
            model = check.kept(check_model, "model", request.model)
        view = await self.attributions.executor.query(
            partial(self.attributions.deal_attribution, deal_id, model)
        )
        return pb.GetDealAttributionResponse(attribution=deal_attribution_message(view))

    async def CompareModels(  # noqa: N802
        self, request: pb.CompareModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompareModelsResponse:
        deal_id = check.required_id("deal_id", request.deal_id)
        views = await self.attributions.executor.query(
            partial(self.attributions.compare_models, deal_id)
        )
        return pb.CompareModelsResponse(
            deal_id=str(deal_id),
            revenue=money_message(views[0].revenue),
            attributions=[deal_attribution_message(v) for v in views],
        )

    async def GetChannelModel(  # noqa: N802
        self, request: pb.GetChannelModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetChannelModelResponse:
        model = check_model("model", request.model, DATA_DRIVEN_MODELS)
        trained = await self.attributions.executor.query(
            partial(self.attributions.channel_model, model)
        )
        return pb.GetChannelModelResponse(channel_model=channel_model_message(trained))

    async def TrainModel(  # noqa: N802
        self, request: pb.TrainModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.TrainModelResponse:
        models = (
            (check_model("model", request.model, DATA_DRIVEN_MODELS),)
            if request.model.strip()
            else DATA_DRIVEN_MODELS
        )
        results = await self.attributions.train(models)
        return pb.TrainModelResponse(
            channel_models=[channel_model_message(r) for r in results]
        )

    async def RecordSpend(  # noqa: N802
        self, request: pb.RecordSpendRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecordSpendResponse:
        with check.every_violation():
            channel = check.kept(check_channel, "channel", request.channel)
            campaign = check.text("campaign", request.campaign)
            amount = check.kept(
                check_spend_amount, "amount", check.money(request, "amount")
            )
            period_start = _time(request, "period_start", required=True)
            period_end = _time(request, "period_end", required=True)
            if period_start is not None and period_end is not None:
                check_period(period_start, period_end)
            cmd = RecordSpend(
                channel=channel,
                campaign=campaign,
                amount=amount,
                period_start=period_start or check.EARLIEST,
                period_end=period_end or check.EARLIEST,
                occurred_at=check.business_time(request, "occurred_at"),
                idempotency_key=check.text(
                    "idempotency_key", request.idempotency_key, max_length=check.MAX_KEY
                ),
            )
        spend, created = await self.attributions.record_spend(
            cmd, request_meta(context)
        )
        return pb.RecordSpendResponse(spend=spend_message(spend), created=created)

    async def ListSpend(  # noqa: N802
        self, request: pb.ListSpendRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSpendResponse:
        with check.every_violation():
            channel = (
                check.kept(check_channel, "channel", request.channel)
                if request.channel.strip()
                else ""
            )
            start = _time(request, "period_start")
            end = _time(request, "period_end")
            if start is not None and end is not None:
                check_period(start, end)
            spend_filter = SpendFilter(
                channel=channel,
                campaign=check.text("campaign", request.campaign),
                start=start,
                end=end,
            )
            page = paging.page_request(request)
        spends = await self.attributions.executor.query(
            partial(self.attributions.list_spend, spend_filter)
        )
        listed = page.of(spends)
        return pb.ListSpendResponse(
            spends=spend_messages(listed.items),
            totals=totals_messages(spend_totals(spends)),
            next_page_token=listed.next_page_token,
        )


def _time(request: Message, field: str, *, required: bool = False) -> datetime | None:
    """A period bound: any valid time from 1990 on (a period may lie ahead)."""
    if not request.HasField(field):
        if required:
            check.refuse(field, "is required")
        return None
    return check.time_from_1990(field, getattr(request, field))
