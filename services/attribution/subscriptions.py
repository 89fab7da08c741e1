"""What the attribution context learns from the lead and deal streams.

Deal events are credited: a win (and revenue recognised later) becomes one
RevenueAttributed per model. Lead and deal events are also kept as journeys with
their outcome, which is what the data-driven models train on. Every handler is
idempotent, so a redelivered event changes nothing; a handler that cannot finish yet
(the lead service is away, or an earlier event of the deal is still to come) raises
`Unavailable`, and the message is delivered again later.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from closedloop.bus.consumer import ConsumerSpec, Subscription, caused_by
from closedloop.bus.streams import context_stream
from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.errors import InvalidArgument
from closedloop.lead.v1 import events_pb2 as lead_events
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.protobuf import enum_name, to_datetime
from services.attribution.facts import DealWonFact, RevenueFact, TouchFact
from services.attribution.lead_journeys import UNASSIGNED
from services.attribution.wire import to_money

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from closedloop.bus.cloudevents import Envelope
    from services.attribution.application import Attributions

DEAL_SUBJECTS = tuple(
    m.DESCRIPTOR.full_name
    for m in (
        deal_events.DealOpened,
        deal_events.DealWon,
        deal_events.DealLost,
        deal_events.RevenueRecognized,
    )
)
LEAD_SUBJECTS = tuple(
    m.DESCRIPTOR.full_name
    for m in (
        lead_events.TouchpointRecorded,
        lead_events.VisitorIdentified,
        lead_events.LeadCaptured,
        lead_events.LeadsMerged,
        lead_events.LeadDisqualified,
        lead_events.LeadReopened,
    )
)
DEAL_DURABLE = "attribution-deal-events"
LEAD_DURABLE = "attribution-lead-events"
#: Revenue must never be dropped because the lead service was away for a while: a
#: deal event is redelivered until it is credited (handlers that refuse an event for
#: good terminate it instead).
UNLIMITED_DELIVERIES = -1


def _uuid(value: str) -> uuid.UUID:
    """An id in another context's event; a malformed one is refused for good."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument("id", f"{value!r} is not a valid id") from None


async def on_deal_event(
    attributions: Attributions, message: Message, envelope: Envelope
) -> None:
    meta = caused_by(envelope)
    if isinstance(message, deal_events.DealOpened):
        await attributions.record_deal_opened(
            _uuid(message.deal_id),
            _uuid(message.lead_id),
            to_money(message.amount),
            to_datetime(message.occurred_at),
            meta,
        )
    elif isinstance(message, deal_events.DealWon):
        await attributions.attribute_win(
            DealWonFact(
                deal_id=_uuid(message.deal_id),
                lead_id=_uuid(message.lead_id),
                amount=to_money(message.amount),
                closed_at=to_datetime(message.closed_at),
            ),
            meta,
        )
    elif isinstance(message, deal_events.DealLost):
        await attributions.record_deal_lost(
            _uuid(message.deal_id),
            _uuid(message.lead_id),
            to_datetime(message.occurred_at),
            meta,
        )
    elif isinstance(message, deal_events.RevenueRecognized):
        await attributions.attribute_revenue(
            RevenueFact(
                deal_id=_uuid(message.deal_id),
                lead_id=_uuid(message.lead_id),
                revenue_id=_uuid(message.revenue_id),
                kind=enum_name(deal_types.RevenueKind, "REVENUE_KIND_", message.kind),
                amount=to_money(message.amount),
                recognized_at=to_datetime(message.recognized_at),
            ),
            meta,
        )


async def on_lead_event(
    attributions: Attributions, message: Message, envelope: Envelope
) -> None:
    meta = caused_by(envelope)
    if isinstance(message, lead_events.TouchpointRecorded):
        touch = message.touchpoint
        await attributions.record_touch(
            TouchFact(
                touchpoint_id=touch.touchpoint_id,
                anonymous_id=touch.anonymous_id,
                lead_id=_uuid(touch.lead_id) if touch.lead_id else None,
                channel=enum_name(lead_types.Channel, "CHANNEL_", touch.channel)
                or UNASSIGNED,
                occurred_at=to_datetime(touch.occurred_at),
            ),
            meta,
        )
    elif isinstance(message, lead_events.LeadCaptured):
        await attributions.record_lead_captured(
            _uuid(message.lead_id),
            message.anonymous_id,
            to_datetime(message.occurred_at),
            meta,
        )
    elif isinstance(message, lead_events.VisitorIdentified):
        await attributions.record_visitor_identified(
            _uuid(message.lead_id), message.anonymous_id, meta
        )
    elif isinstance(message, lead_events.LeadsMerged):
        await attributions.record_leads_merged(
            _uuid(message.surviving_lead_id),
            _uuid(message.merged_lead_id),
            meta,
        )
    elif isinstance(message, lead_events.LeadDisqualified):
        await attributions.record_lead_disqualified(
            _uuid(message.lead_id),
            to_datetime(message.occurred_at),
            envelope.event_id,
            meta,
        )
    elif isinstance(message, lead_events.LeadReopened):
        await attributions.record_lead_reopened(
            _uuid(message.lead_id),
            to_datetime(message.occurred_at),
            envelope.event_id,
            meta,
        )


def attribution_subscriptions(attributions: Attributions) -> list[ConsumerSpec]:
    """One durable consumer per stream, so each stream's events keep their order."""

    async def deal_handler(message: Message, envelope: Envelope) -> None:
        await on_deal_event(attributions, message, envelope)

    async def lead_handler(message: Message, envelope: Envelope) -> None:
        await on_lead_event(attributions, message, envelope)

    return [
        ConsumerSpec(
            Subscription(
                DEAL_DURABLE,
                context_stream("deal"),
                DEAL_SUBJECTS,
                max_deliver=UNLIMITED_DELIVERIES,
            ),
            deal_handler,
        ),
        ConsumerSpec(
            Subscription(LEAD_DURABLE, context_stream("lead"), LEAD_SUBJECTS),
            lead_handler,
        ),
    ]
