"""What the lead context learns from other contexts' events, and what it does then."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from closedloop.bus.consumer import ConsumerSpec, Subscription, caused_by
from closedloop.bus.streams import context_stream
from closedloop.consent.v1 import events_pb2 as consent_events
from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.protobuf import to_datetime

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from closedloop.bus.cloudevents import Envelope
    from services.lead.application import Leads

DEAL_OPENED = deal_events.DealOpened.DESCRIPTOR.full_name
SUBJECT_ERASED = consent_events.SubjectErased.DESCRIPTOR.full_name


def lead_subscriptions(leads: Leads) -> list[ConsumerSpec]:
    async def on_deal_opened(message: Message, envelope: Envelope) -> None:
        assert isinstance(message, deal_events.DealOpened)  # noqa: S101 - by subject
        await leads.record_conversion(
            uuid.UUID(message.lead_id),
            uuid.UUID(message.deal_id),
            to_datetime(message.occurred_at),
            caused_by(envelope),
        )

    async def on_subject_erased(message: Message, envelope: Envelope) -> None:
        assert isinstance(message, consent_events.SubjectErased)  # noqa: S101
        await leads.erase_subject(
            uuid.UUID(message.lead_id) if message.lead_id else None,
            message.email_digest,
            to_datetime(message.occurred_at),
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
