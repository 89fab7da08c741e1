"""The one place where attribution's domain values meet closedloop.attribution.v1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.attribution.v1 import attribution_service_pb2 as pb
from closedloop.attribution.v1 import events_pb2
from closedloop.common.v1 import money_pb2
from closedloop.money import Money
from closedloop.protobuf import timestamp
from services.attribution.domain import (
    ChannelModel,
    ChannelWeight,
    ConversionCredits,
    ConversionKind,
    DealRecord,
    PersonJourney,
    Spend,
    SpendLedger,
    TrainedModel,
)

if TYPE_CHECKING:
    import uuid
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from google.protobuf.message import Message

    from services.attribution.domain import ModelCredits
    from services.attribution.models import Credit
    from services.attribution.views import ConversionView, DealAttributionView

SOURCE = "/closedloop/attribution"

_CONVERSION_KINDS = {
    ConversionKind.WON: events_pb2.CONVERSION_KIND_WON,
    ConversionKind.REVENUE_RECOGNIZED: events_pb2.CONVERSION_KIND_REVENUE_RECOGNIZED,
}


def money_message(money: Money) -> money_pb2.Money:
    return money_pb2.Money(minor_units=money.minor_units, currency=money.currency)


def to_money(message: money_pb2.Money) -> Money:
    return Money(message.minor_units, message.currency)


def credit_message(credit: Credit, currency: str) -> events_pb2.Credit:
    return events_pb2.Credit(
        touchpoint_id=credit.touchpoint_id or "",
        channel=credit.channel,
        campaign=credit.campaign or "",
        touch_occurred_at=(
            timestamp(credit.occurred_at) if credit.occurred_at is not None else None
        ),
        amount=money_message(Money(credit.amount_minor, currency)),
    )


def revenue_attributed(
    deal_id: uuid.UUID,
    lead_id: uuid.UUID,
    kind: ConversionKind | str,
    revenue_id: str,
    revenue_kind: str,
    amount: Money,
    occurred_at: datetime,
    credited: ModelCredits,
) -> events_pb2.RevenueAttributed:
    return events_pb2.RevenueAttributed(
        deal_id=str(deal_id),
        lead_id=str(lead_id),
        model=credited.model,
        model_key=credited.model_key,
        conversion_kind=_CONVERSION_KINDS[ConversionKind(kind)],
        revenue_id=revenue_id,
        revenue_kind=revenue_kind,
        amount=money_message(amount),
        occurred_at=timestamp(occurred_at),
        credits=[credit_message(c, amount.currency) for c in credited.credits],
        fallback=credited.fallback,
    )


def channel_weight_message(weight: ChannelWeight) -> events_pb2.ChannelWeight:
    return events_pb2.ChannelWeight(
        channel=weight.channel,
        weight=weight.weight,
        share=weight.share,
        conversions=weight.conversions,
        value=weight.value,
        standard_error=weight.standard_error,
    )


def channel_model_message(trained: TrainedModel) -> pb.ChannelModel:
    return pb.ChannelModel(
        model=trained.model,
        model_key=trained.model_key,
        journeys=trained.journeys,
        converting_journeys=trained.converting_journeys,
        conversion_probability=trained.probability,
        channels=[channel_weight_message(c) for c in trained.channels],
        trained_at=timestamp(trained.trained_at),
        standard_error=trained.standard_error,
        value_currency=trained.value_currency,
    )


def spend_message(spend: Spend) -> pb.Spend:
    return pb.Spend(
        spend_id=str(spend.id),
        channel=spend.channel,
        campaign=spend.campaign,
        amount=money_message(spend.amount),
        period_start=timestamp(spend.period_start),
        period_end=timestamp(spend.period_end),
        occurred_at=timestamp(spend.occurred_at),
    )


def conversion_message(view: ConversionView) -> events_pb2.RevenueAttributed:
    return revenue_attributed(
        view.deal_id,
        view.lead_id,
        view.kind,
        view.revenue_id,
        view.revenue_kind,
        view.amount,
        view.occurred_at,
        view.credited,
    )


def deal_attribution_message(view: DealAttributionView) -> pb.DealAttribution:
    return pb.DealAttribution(
        deal_id=str(view.deal_id),
        lead_id=str(view.lead_id),
        model=view.model,
        model_key=view.model_key,
        revenue=money_message(view.revenue),
        credits=[credit_message(c, view.revenue.currency) for c in view.credits],
        fallback=view.fallback,
        won_amount=money_message(view.won_amount),
        won_at=timestamp(view.won_at),
        conversions=[conversion_message(c) for c in view.conversions],
    )


def totals_messages(totals: Iterable[Money]) -> list[money_pb2.Money]:
    return [money_message(m) for m in totals]


def spend_messages(spends: Sequence[Spend]) -> list[pb.Spend]:
    return [spend_message(s) for s in spends]


# -- domain event -> message -----------------------------------------------------


def to_message(event: Any) -> Message | None:
    """The published form of a stored event; None for the service's own bookkeeping.

    Published: RevenueAttributed (one per conversion and model), ChannelModelTrained
    and SpendRecorded. What the service keeps of other contexts' events (journeys,
    deals) and its indexes stay inside.
    """
    if isinstance(event, ConversionCredits.Attributed):
        return events_pb2.RevenueAttributed(
            deal_id=str(event.deal_id),
            lead_id=str(event.lead_id),
            model=event.model,
            model_key=event.model_key,
            conversion_kind=_CONVERSION_KINDS[ConversionKind(event.kind)],
            revenue_id=event.revenue_id,
            revenue_kind=event.revenue_kind,
            amount=money_message(event.amount),
            occurred_at=timestamp(event.occurred_at),
            credits=[
                credit_message(c, event.amount.currency) for c in event.credit_lines
            ],
            fallback=event.fallback,
        )
    if isinstance(event, ChannelModel.Trained):
        channels: list[ChannelWeight] = event.channels
        return events_pb2.ChannelModelTrained(
            model=event.model,
            model_key=event.model_key,
            journeys=event.journeys,
            converting_journeys=event.converting_journeys,
            conversion_probability=event.probability,
            channels=[channel_weight_message(c) for c in channels],
            trained_at=timestamp(event.trained_at),
            standard_error=event.standard_error,
            value_currency=event.value_currency,
        )
    if isinstance(event, Spend.Recorded):
        return events_pb2.SpendRecorded(
            spend_id=str(event.originator_id),
            channel=event.channel,
            campaign=event.campaign,
            amount=money_message(event.amount),
            period_start=timestamp(event.period_start),
            period_end=timestamp(event.period_end),
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(
        event,
        PersonJourney.Event
        | DealRecord.Event
        | ConversionCredits.Event
        | ChannelModel.Event
        | SpendLedger.Event,
    ):
        return None
    msg = f"no wire mapping for {type(event).__qualname__}"
    raise TypeError(msg)
