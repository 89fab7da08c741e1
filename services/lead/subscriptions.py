"""What the lead context learns from other contexts' events, and what it does then."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from closedloop.bus.consumer import ConsumerSpec, Subscription
from closedloop.bus.streams import context_stream
from closedloop.eventstore.metadata import EventMeta
from closedloop.protobuf import to_datetime

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from closedloop.bus.cloudevents import Envelope
    from closedloop.services.lead.application import Leads

DEAL_OPENED = "closedloop.deal.v1.DealOpened"
SUBJECT_ERASED = "closedloop.consent.v1.SubjectErased"


def caused_by(envelope: Envelope) -> EventMeta:
    """The events we record in reaction keep the trace and name their cause."""
    return EventMeta.new(
        correlation_id=envelope.correlation_id,
        causation_id=envelope.event_id,
        traceparent=envelope.traceparent,
    )


def lead_subscriptions(leads: Leads) -> list[ConsumerSpec]:
    async def on_deal_opened(message: Message, envelope: Envelope) -> None:
        await leads.record_conversion(
            uuid.UUID(getattr(message, "lead_id")),  # noqa: B009 - any DealOpened version
            uuid.UUID(getattr(message, "deal_id")),  # noqa: B009
            to_datetime(getattr(message, "occurred_at")),  # noqa: B009
            caused_by(envelope),
        )

    async def on_subject_erased(message: Message, envelope: Envelope) -> None:
        raw_lead_id: str = getattr(message, "lead_id")  # noqa: B009
        await leads.erase_subject(
            uuid.UUID(raw_lead_id) if raw_lead_id else None,
            getattr(message, "email_digest"),  # noqa: B009
            to_datetime(getattr(message, "occurred_at")),  # noqa: B009
            caused_by(envelope),
        )

    return [
        ConsumerSpec(
            Subscription("lead-deal-opened", context_stream("deal"), (DEAL_OPENED,)),
            on_deal_opened,
        ),
        ConsumerSpec(
            Subscription(
                "lead-subject-erased", context_stream("consent"), (SUBJECT_ERASED,)
            ),
            on_subject_erased,
        ),
    ]
