"""What the deal context learns from other contexts: that a person was erased."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from closedloop.bus.consumer import ConsumerSpec, Subscription, caused_by
from closedloop.bus.streams import context_stream
from closedloop.consent.v1 import events_pb2 as consent_events
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.protobuf import to_datetime

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from closedloop.bus.cloudevents import Envelope
    from services.deal.application import Deals

SUBJECT_ERASED = consent_events.SubjectErased.DESCRIPTOR.full_name
LEAD_ERASED = lead_events.LeadPersonalDataErased.DESCRIPTOR.full_name


def deal_subscriptions(deals: Deals) -> list[ConsumerSpec]:
    """Both erasure signals are followed, idempotently.

    SubjectErased names the lead directly; LeadPersonalDataErased also covers leads
    found only by email and every lead merged with the erased one.
    """

    async def on_erased(message: Message, envelope: Envelope) -> None:
        assert isinstance(  # noqa: S101 - the subscriptions' subjects say so
            message, consent_events.SubjectErased | lead_events.LeadPersonalDataErased
        )
        if not message.lead_id:
            return  # an email-only subject: the lead context resolves it, see above
        await deals.erase_lead(
            uuid.UUID(message.lead_id),
            caused_by(envelope),
            occurred_at=to_datetime(message.occurred_at),
        )

    return [
        ConsumerSpec(
            Subscription(
                "deal-subject-erased", context_stream("consent"), (SUBJECT_ERASED,)
            ),
            on_erased,
        ),
        ConsumerSpec(
            Subscription("deal-lead-erased", context_stream("lead"), (LEAD_ERASED,)),
            on_erased,
        ),
    ]
