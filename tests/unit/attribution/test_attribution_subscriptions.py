"""What the attribution service follows, and how a malformed event is refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from closedloop.bus.cloudevents import Envelope
from closedloop.deal.v1 import events_pb2 as deal_events
from closedloop.errors import InvalidArgument
from closedloop.eventstore.unit_of_work import CommandExecutor
from closedloop.lead.v1 import events_pb2 as lead_events
from services.attribution.application import Attributions
from services.attribution.lead_journeys import LeadJourneys
from services.attribution.store import AttributionStore
from services.attribution.subscriptions import (
    DEAL_DURABLE,
    DEAL_SUBJECTS,
    LEAD_DURABLE,
    LEAD_SUBJECTS,
    UNLIMITED_DELIVERIES,
    attribution_subscriptions,
    on_deal_event,
    on_lead_event,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def app() -> AsyncIterator[Attributions]:
    store = AttributionStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    executor = CommandExecutor(store)
    yield Attributions(store, executor, lead_journeys=LeadJourneys())
    await executor.close()
    store.close()


def envelope(message_type: str) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type=message_type,
        source="/closedloop/deal",
        subject=str(uuid.uuid4()),
        time=datetime.now(UTC),
        sequence=1,
    )


def test_the_streams_and_subjects_followed(app: Attributions) -> None:
    deal, lead = attribution_subscriptions(app)
    assert (deal.subscription.durable, deal.subscription.stream) == (
        DEAL_DURABLE,
        "CLOSEDLOOP_DEAL",
    )
    assert (
        deal.subscription.subjects
        == DEAL_SUBJECTS
        == (
            "closedloop.deal.v1.DealOpened",
            "closedloop.deal.v1.DealWon",
            "closedloop.deal.v1.DealLost",
            "closedloop.deal.v1.RevenueRecognized",
        )
    )
    # A win is never dropped because the lead service was away for a while.
    assert deal.subscription.max_deliver == UNLIMITED_DELIVERIES
    assert (lead.subscription.durable, lead.subscription.stream) == (
        LEAD_DURABLE,
        "CLOSEDLOOP_LEAD",
    )
    assert (
        set(lead.subscription.subjects)
        == set(LEAD_SUBJECTS)
        == {
            "closedloop.lead.v1.TouchpointRecorded",
            "closedloop.lead.v1.VisitorIdentified",
            "closedloop.lead.v1.LeadCaptured",
            "closedloop.lead.v1.LeadsMerged",
            "closedloop.lead.v1.LeadDisqualified",
            "closedloop.lead.v1.LeadReopened",
        }
    )


async def test_a_malformed_id_is_refused_for_good(app: Attributions) -> None:
    """A domain error: the consumer terminates the message instead of retrying."""
    won = deal_events.DealWon(deal_id="not-an-id", lead_id=str(uuid.uuid4()))
    with pytest.raises(InvalidArgument):
        await on_deal_event(app, won, envelope("closedloop.deal.v1.DealWon"))
    merged = lead_events.LeadsMerged(surviving_lead_id="x", merged_lead_id="y")
    with pytest.raises(InvalidArgument):
        await on_lead_event(app, merged, envelope("closedloop.lead.v1.LeadsMerged"))
    assert (app.store.recorder.max_notification_id() or 0) == 0


async def test_a_touch_without_a_channel_is_unassigned(app: Attributions) -> None:
    lead_id = uuid.uuid4()
    message = lead_events.TouchpointRecorded()
    message.touchpoint.touchpoint_id = "tp-1"
    message.touchpoint.lead_id = str(lead_id)
    message.touchpoint.occurred_at.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC))
    await on_lead_event(app, message, envelope("closedloop.lead.v1.TouchpointRecorded"))
    app.fold.update()
    (person,) = app.fold.persons.values()
    assert [t[3] for t in person.touches] == ["unassigned"]
