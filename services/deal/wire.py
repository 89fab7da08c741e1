"""The one place where deal domain events meet their closedloop.deal.v1 messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from closedloop.common.v1 import money_pb2
from closedloop.deal.v1 import deal_service_pb2, events_pb2, types_pb2
from closedloop.money import Money
from closedloop.protobuf import enum_name, enum_number, timestamp
from services.deal.domain import Deal, LeadDeals, Revenue

if TYPE_CHECKING:
    from datetime import datetime

    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp


SOURCE = "/closedloop/deal"


def money_message(money: Money) -> money_pb2.Money:
    return money_pb2.Money(minor_units=money.minor_units, currency=money.currency)


def stage_number(stage: str) -> int:
    return enum_number(types_pb2.DealStage, "DEAL_STAGE_", stage)


def stage_name(number: int) -> str:
    return enum_name(types_pb2.DealStage, "DEAL_STAGE_", number)


def loss_reason_number(reason: str) -> int:
    return enum_number(types_pb2.LossReason, "LOSS_REASON_", reason)


def loss_reason_name(number: int) -> str:
    return enum_name(types_pb2.LossReason, "LOSS_REASON_", number)


def revenue_kind_number(kind: str) -> int:
    return enum_number(types_pb2.RevenueKind, "REVENUE_KIND_", kind)


def revenue_kind_name(number: int) -> str:
    return enum_name(types_pb2.RevenueKind, "REVENUE_KIND_", number)


def _optional_timestamp(value: datetime | None) -> Timestamp | None:
    return timestamp(value) if value is not None else None


def revenue_message(revenue: Revenue) -> types_pb2.Revenue:
    return types_pb2.Revenue(
        revenue_id=str(revenue.revenue_id),
        amount=money_message(revenue.amount),
        kind=revenue_kind_number(revenue.kind),  # type: ignore[arg-type]
        recognized_at=timestamp(revenue.recognized_at),
    )


def deal_message(deal: Deal) -> deal_service_pb2.Deal:
    return deal_service_pb2.Deal(
        deal_id=str(deal.id),
        lead_id=str(deal.lead_id),
        name=deal.name,
        amount=money_message(deal.amount),
        currency_exponent=deal.amount.exponent,
        expected_close_at=_optional_timestamp(deal.expected_close_at),
        stage=stage_number(deal.stage),  # type: ignore[arg-type]
        created_at=timestamp(deal.created_at),
        stage_changed_at=timestamp(deal.stage_changed_at),
        closed_at=_optional_timestamp(deal.closed_at),
        loss_reason=loss_reason_number(deal.loss_reason),  # type: ignore[arg-type]
        loss_detail=deal.loss_detail,
        revenues=[revenue_message(r) for r in deal.revenues],
        recognized_revenue=money_message(deal.recognized_revenue),
        personal_data_erased=deal.personal_data_erased,
        version=deal.version,
    )


# -- domain event -> message -----------------------------------------------------


def to_message(event: Any) -> Message | None:  # noqa: PLR0911 - one branch per event type
    """The published form of a stored event; None for the service's own bookkeeping."""
    deal_id = str(event.originator_id)
    if isinstance(event, Deal.Opened):
        return events_pb2.DealOpened(
            deal_id=deal_id,
            lead_id=str(event.lead_id),
            name=event.name,
            amount=money_message(event.amount),
            expected_close_at=_optional_timestamp(event.expected_close_at),
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Deal.StageChanged):
        return events_pb2.DealStageChanged(
            deal_id=deal_id,
            lead_id=str(event.lead_id),
            previous_stage=stage_number(event.previous_stage),  # type: ignore[arg-type]
            stage=stage_number(event.stage),  # type: ignore[arg-type]
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Deal.AmountUpdated):
        return events_pb2.DealAmountUpdated(
            deal_id=deal_id,
            lead_id=str(event.lead_id),
            amount=money_message(event.amount),
            previous_amount=money_message(event.previous_amount),
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Deal.Won):
        return events_pb2.DealWon(
            deal_id=deal_id,
            lead_id=str(event.lead_id),
            amount=money_message(event.amount),
            closed_at=timestamp(event.closed_at),
        )
    if isinstance(event, Deal.Lost):
        return events_pb2.DealLost(
            deal_id=deal_id,
            lead_id=str(event.lead_id),
            reason=event.reason,
            loss_reason=loss_reason_number(event.loss_reason),  # type: ignore[arg-type]
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, Deal.RevenueRecognized):
        return events_pb2.RevenueRecognized(
            deal_id=deal_id,
            lead_id=str(event.lead_id),
            revenue_id=str(event.revenue_id),
            amount=money_message(event.amount),
            kind=revenue_kind_number(event.kind),  # type: ignore[arg-type]
            recognized_at=timestamp(event.recognized_at),
        )
    if isinstance(event, Deal.PersonalDataErased):
        return events_pb2.DealPersonalDataErased(
            deal_id=deal_id,
            lead_id=str(event.lead_id),
            occurred_at=timestamp(event.occurred_at),
        )
    if isinstance(event, LeadDeals.Event):
        return None
    msg = f"no wire mapping for {type(event).__qualname__}"
    raise TypeError(msg)
