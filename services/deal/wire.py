"""The one place where deal domain events meet their closedloop.deal.v1 messages."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from closedloop.common.v1 import money_pb2
from closedloop.deal.v1 import deal_service_pb2, events_pb2, types_pb2
from closedloop.eventstore.metadata import META_ATTRIBUTE, EventMeta
from closedloop.money import Money
from closedloop.protobuf import enum_name, enum_number, timestamp, to_datetime
from services.deal.domain import Deal, LeadDeals, Revenue

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

    from closedloop.bus.cloudevents import Envelope

SOURCE = "/closedloop/deal"
_DEAL_TOPIC = "services.deal.domain:Deal"


def money_message(money: Money) -> money_pb2.Money:
    return money_pb2.Money(minor_units=money.minor_units, currency=money.currency)


def to_money(message: money_pb2.Money) -> Money:
    return Money(message.minor_units, message.currency)


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


# -- message -> domain event -----------------------------------------------------


_FROM_MESSAGE: dict[
    type[Message], tuple[type[Any], Callable[[Any], dict[str, Any]]]
] = {
    events_pb2.DealOpened: (
        Deal.Opened,
        lambda m: {
            "originator_topic": _DEAL_TOPIC,
            "lead_id": uuid.UUID(m.lead_id),
            "name": m.name,
            "amount": to_money(m.amount),
            "expected_close_at": (
                to_datetime(m.expected_close_at)
                if m.HasField("expected_close_at")
                else None
            ),
            "occurred_at": to_datetime(m.occurred_at),
            "idempotency_key": "",
        },
    ),
    events_pb2.DealStageChanged: (
        Deal.StageChanged,
        lambda m: {
            "lead_id": uuid.UUID(m.lead_id),
            "previous_stage": stage_name(m.previous_stage),
            "stage": stage_name(m.stage),
            "occurred_at": to_datetime(m.occurred_at),
        },
    ),
    events_pb2.DealAmountUpdated: (
        Deal.AmountUpdated,
        lambda m: {
            "lead_id": uuid.UUID(m.lead_id),
            "amount": to_money(m.amount),
            "previous_amount": to_money(m.previous_amount),
            "occurred_at": to_datetime(m.occurred_at),
        },
    ),
    events_pb2.DealWon: (
        Deal.Won,
        lambda m: {
            "lead_id": uuid.UUID(m.lead_id),
            "amount": to_money(m.amount),
            "closed_at": to_datetime(m.closed_at),
        },
    ),
    events_pb2.DealLost: (
        Deal.Lost,
        lambda m: {
            "lead_id": uuid.UUID(m.lead_id),
            "reason": m.reason,
            "loss_reason": loss_reason_name(m.loss_reason),
            "occurred_at": to_datetime(m.occurred_at),
        },
    ),
    events_pb2.RevenueRecognized: (
        Deal.RevenueRecognized,
        lambda m: {
            "lead_id": uuid.UUID(m.lead_id),
            "revenue_id": uuid.UUID(m.revenue_id),
            "amount": to_money(m.amount),
            "kind": revenue_kind_name(m.kind),
            "recognized_at": to_datetime(m.recognized_at),
            "idempotency_key": "",
        },
    ),
    events_pb2.DealPersonalDataErased: (
        Deal.PersonalDataErased,
        lambda m: {
            "lead_id": uuid.UUID(m.lead_id),
            "occurred_at": to_datetime(m.occurred_at),
        },
    ),
}


def from_message(message: Message, envelope: Envelope) -> Any:
    """Rebuilds the domain event a message came from (idempotency keys aside)."""
    try:
        event_class, fields = _FROM_MESSAGE[type(message)]
    except KeyError:
        msg = f"not a deal event: {type(message).__name__}"
        raise TypeError(msg) from None
    state = fields(message)
    state.update(
        originator_id=uuid.UUID(envelope.subject),
        originator_version=envelope.sequence,
        timestamp=envelope.time,
    )
    if envelope.correlation_id or envelope.causation_id or envelope.traceparent:
        state[META_ATTRIBUTE] = EventMeta(
            envelope.correlation_id, envelope.causation_id, envelope.traceparent
        ).as_dict()
    domain_event = object.__new__(event_class)
    object.__setattr__(domain_event, "__dict__", state)
    return domain_event
