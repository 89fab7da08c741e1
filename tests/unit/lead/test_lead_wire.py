"""Every stored lead event to its closedloop.lead.v1 message, as decoded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.utils import get_topic
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from closedloop.bus.cloudevents import Envelope, EnvelopeError, decode_payload
from closedloop.eventstore.metadata import META_ATTRIBUTE, EventMeta
from closedloop.lead.v1 import events_pb2, types_pb2
from closedloop.protobuf import enum_name, to_datetime
from closedloop.testing.wire import envelope_for as shared_envelope_for
from closedloop.testing.wire import received as shared_received
from services.lead import wire
from services.lead.domain import (
    EmailClaim,
    Lead,
    TouchpointOwner,
    TouchpointRequest,
    Visitor,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T0 = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)

#: Every event type the service stores and publishes, with its message's name.
MESSAGE_NAMES = {
    "Visitor.FirstSeen": "VisitorFirstSeen",
    "TouchpointOwner.TouchpointRecorded": "TouchpointRecorded",
    "Lead.Captured": "LeadCaptured",
    "Lead.VisitorIdentified": "VisitorIdentified",
    "Lead.Qualified": "LeadQualified",
    "Lead.Accepted": "LeadAccepted",
    "Lead.Disqualified": "LeadDisqualified",
    "Lead.Reopened": "LeadReopened",
    "Lead.DuplicateMerged": "LeadsMerged",
    "Lead.MergedInto": "LeadMergedInto",
    "Lead.Converted": "LeadConverted",
    "Lead.PersonalDataErased": "LeadPersonalDataErased",
}

NOT_PUBLISHED = {"idempotency_key"}


def touchpoint(
    key: str, channel: str, interaction: str, days: int
) -> TouchpointRequest:
    return TouchpointRequest(
        touchpoint_id=uuid.uuid4(),
        channel=channel,
        source="google",
        medium="cpc",
        campaign="spring-24",
        content="hero-b",
        interaction=interaction,
        occurred_at=T0 + timedelta(days=days),
        attributes={"utm_term": "crm software", "gclid": "abc123"},
        idempotency_key=key,
    )


def lead_events() -> list[Any]:
    """Real events from the aggregates: every type, some in more than one shape."""
    visitor = Visitor("ga-1.2.3", T0 - timedelta(days=10))
    visitor.record_touchpoint(touchpoint("k1", "paid_search", "ad_click", -10))
    visitor.record_touchpoint(touchpoint("", "", "", -9))  # no channel, no interaction

    lead = Lead(
        email="Ana@Example.com",
        name="Ana Lima",
        company="Example GmbH",
        source_system="hubspot",
        anonymous_id="ga-1.2.3",
        occurred_at=T0,
        idempotency_key="capture-1",
        email_digest="ab" * 32,
    )
    lead.identify_visitor("ga-1.2.3", T0)
    lead.record_touchpoint(touchpoint("k2", "events", "webinar", 1))
    lead.qualify(
        score=87, reason="visited pricing twice", actor="scoring", occurred_at=T0
    )
    lead.accept(owner="sam", skip_qualification=False, actor="sdr-1", occurred_at=T0)
    lead.disqualify(reason="no_budget", detail="next FY", actor="sam", occurred_at=T0)
    lead.reopen(reason="budget approved", actor="sam", occurred_at=T0)
    lead.accept(owner="kim", skip_qualification=True, actor="sdr-2", occurred_at=T0)

    duplicate = Lead(
        email="ana.work@example.com",
        name="",
        company="",
        source_system="",
        anonymous_id="",
        occurred_at=T0 - timedelta(days=400),
    )
    duplicate.disqualify(reason="duplicate", detail="", actor="", occurred_at=T0)
    lead.merge(duplicate, actor="ops", occurred_at=T0 + timedelta(days=2))
    lead.convert(uuid.uuid4(), T0 + timedelta(days=3))
    erased = Lead(
        email="gone@example.com",
        name="Gone",
        company="",
        source_system="",
        anonymous_id="",
        occurred_at=T0,
    )
    erased.erase_personal_data(T0 + timedelta(days=5))

    return [
        *visitor.collect_events(),
        *lead.collect_events(),
        *duplicate.collect_events(),
        *erased.collect_events(),
    ]


def claim_events() -> list[Any]:
    claim = EmailClaim("0f" * 32, uuid.uuid4())
    claim.reassign(uuid.uuid4())
    claim.release()
    return claim.collect_events()


def envelope_for(event: Any, message: Message, **meta: str) -> Envelope:
    return shared_envelope_for(event, message, wire.SOURCE, **meta)


def published(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in NOT_PUBLISHED}


def _touchpoint(message: events_pb2.TouchpointRecorded) -> dict[str, Any]:
    tp = message.touchpoint
    return {
        "touchpoint_id": uuid.UUID(tp.touchpoint_id),
        "channel": enum_name(types_pb2.Channel, "CHANNEL_", tp.channel),
        "source": tp.source,
        "medium": tp.medium,
        "campaign": tp.campaign,
        "content": tp.content,
        "interaction": enum_name(types_pb2.Interaction, "INTERACTION_", tp.interaction),
        "occurred_at": to_datetime(tp.occurred_at),
        "attributes": dict(tp.attributes),
        "anonymous_id": tp.anonymous_id,
        "lead_id": uuid.UUID(tp.lead_id) if tp.lead_id else None,
    }


#: What each message's fields are, read back in the domain's terms; the message type
#: names the aggregate a creation event starts.
MESSAGE_ATTRIBUTES: dict[type[Message], Callable[[Any], dict[str, Any]]] = {
    events_pb2.VisitorFirstSeen: lambda m: {
        "originator_topic": get_topic(Visitor),
        "anonymous_id": m.anonymous_id,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.TouchpointRecorded: _touchpoint,
    events_pb2.LeadCaptured: lambda m: {
        "originator_topic": get_topic(Lead),
        "email": m.email,
        "name": m.name,
        "company": m.company,
        "source_system": m.source_system,
        "anonymous_id": m.anonymous_id,
        "occurred_at": to_datetime(m.occurred_at),
        "email_digest": m.email_digest,
    },
    events_pb2.VisitorIdentified: lambda m: {
        "anonymous_id": m.anonymous_id,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadQualified: lambda m: {
        "score": m.score,
        "reason": m.reason,
        "actor": m.actor,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadAccepted: lambda m: {
        "owner": m.owner,
        "skipped_qualification": m.skipped_qualification,
        "actor": m.actor,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadDisqualified: lambda m: {
        "reason": enum_name(
            types_pb2.DisqualificationReason, "DISQUALIFICATION_REASON_", m.reason
        ),
        "detail": m.detail,
        "actor": m.actor,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadReopened: lambda m: {
        "reason": m.reason,
        "actor": m.actor,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadsMerged: lambda m: {
        "merged_lead_id": uuid.UUID(m.merged_lead_id),
        "actor": m.actor,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadConverted: lambda m: {
        "deal_id": uuid.UUID(m.deal_id),
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadPersonalDataErased: lambda m: {
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.LeadMergedInto: lambda m: {
        "surviving_lead_id": uuid.UUID(m.surviving_lead_id),
        "occurred_at": to_datetime(m.occurred_at),
    },
}


#: The event's message as a consumer decodes it, and the attributes it carries.
received = partial(
    shared_received,
    to_message=wire.to_message,
    source=wire.SOURCE,
    read=MESSAGE_ATTRIBUTES,
)


def test_the_scenario_produces_every_event_type() -> None:
    assert {type(e).__qualname__ for e in lead_events()} == set(MESSAGE_NAMES)


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_event_is_carried_whole_by_its_message(qualname: str) -> None:
    events = [e for e in lead_events() if type(e).__qualname__ == qualname]
    assert events
    for original in events:
        message, carried = received(original)

        assert message.DESCRIPTOR.name == MESSAGE_NAMES[qualname]
        assert META_ATTRIBUTE not in vars(original)
        assert META_ATTRIBUTE not in carried
        assert carried == published(vars(original))
        assert carried["originator_id"] == original.originator_id
        assert carried["originator_version"] == original.originator_version
        assert carried["timestamp"] == original.timestamp


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_event_meta_travels_in_the_envelope(qualname: str) -> None:
    original = next(e for e in lead_events() if type(e).__qualname__ == qualname)
    meta = EventMeta.new(correlation_id="corr-1", causation_id="cause-1")
    meta.attach(original)

    _, carried = received(original, **meta.as_dict())

    assert EventMeta(**carried[META_ATTRIBUTE]) == meta
    assert published(carried) == published(vars(original))


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_message_names_follow_events_proto(qualname: str) -> None:
    original = next(e for e in lead_events() if type(e).__qualname__ == qualname)
    message = wire.to_message(original)
    assert message is not None
    expected = f"closedloop.lead.v1.{MESSAGE_NAMES[qualname]}"
    assert message.DESCRIPTOR.full_name == expected
    assert message.DESCRIPTOR.file is events_pb2.DESCRIPTOR


def test_every_message_of_events_proto_is_published() -> None:
    assert set(events_pb2.DESCRIPTOR.message_types_by_name) == set(
        MESSAGE_NAMES.values()
    )


def test_messages_carry_business_time_and_ids() -> None:
    by_name: dict[str, Any] = {}
    for domain_event in lead_events():
        by_name.setdefault(type(domain_event).__qualname__, domain_event)
    captured = wire.to_message(by_name["Lead.Captured"])
    assert isinstance(captured, events_pb2.LeadCaptured)
    assert captured.lead_id == str(by_name["Lead.Captured"].originator_id)
    assert captured.email == "Ana@Example.com"
    assert captured.occurred_at.ToDatetime(tzinfo=UTC) == T0

    merged = wire.to_message(by_name["Lead.DuplicateMerged"])
    merged_into = wire.to_message(by_name["Lead.MergedInto"])
    assert isinstance(merged, events_pb2.LeadsMerged)
    assert isinstance(merged_into, events_pb2.LeadMergedInto)
    assert merged.surviving_lead_id == merged_into.surviving_lead_id
    assert merged.merged_lead_id == merged_into.merged_lead_id
    assert merged.surviving_lead_id != merged.merged_lead_id

    disqualified = wire.to_message(by_name["Lead.Disqualified"])
    assert isinstance(disqualified, events_pb2.LeadDisqualified)
    assert disqualified.reason != 0  # a known reason, not UNSPECIFIED


def test_touchpoint_message_names_its_owner() -> None:
    recorded = [
        e for e in lead_events() if isinstance(e, TouchpointOwner.TouchpointRecorded)
    ]
    messages = [wire.to_message(e) for e in recorded]
    assert all(isinstance(m, events_pb2.TouchpointRecorded) for m in messages)
    by_visitor = [m.touchpoint for m in messages if m.touchpoint.anonymous_id]
    by_lead = [m.touchpoint for m in messages if m.touchpoint.lead_id]
    assert len(by_visitor) == 2
    assert len(by_lead) == 1
    assert all(not tp.lead_id for tp in by_visitor)
    assert by_visitor[0].channel != 0
    assert by_visitor[0].interaction != 0
    assert by_visitor[1].channel == 0
    assert dict(by_lead[0].attributes) == {
        "utm_term": "crm software",
        "gclid": "abc123",
    }


def test_email_claims_are_not_published() -> None:
    events = claim_events()
    assert [type(e).__qualname__ for e in events] == [
        "EmailClaim.Claimed",
        "EmailClaim.Reassigned",
        "EmailClaim.Released",
    ]
    for claim_event in events:
        assert wire.to_message(claim_event) is None


def test_envelope_headers_round_trip() -> None:
    event = lead_events()[0]
    message = wire.to_message(event)
    assert message is not None
    for meta in ({}, EventMeta.new().as_dict()):
        envelope = envelope_for(event, message, **meta)
        envelope = Envelope(**{**vars(envelope), "position": 42})
        headers = envelope.headers()
        assert headers["ce-type"] == message.DESCRIPTOR.full_name
        assert headers["ce-source"] == wire.SOURCE
        assert headers["ce-subject"] == str(event.originator_id)
        assert Envelope.from_headers(headers) == envelope
        assert Envelope.from_headers(envelope.headers(relay_position=7)) == envelope


def test_unknown_events_and_messages_are_refused() -> None:
    class Stranger:
        originator_id = uuid.uuid4()

    with pytest.raises(TypeError):
        wire.to_message(Stranger())
    envelope = Envelope(
        event_id="x",
        event_type="closedloop.other.v1.Thing",
        source="/closedloop/other",
        subject=str(uuid.uuid4()),
        time=T0,
        sequence=1,
    )
    with pytest.raises(EnvelopeError):
        decode_payload(envelope.event_type, Timestamp().SerializeToString())
