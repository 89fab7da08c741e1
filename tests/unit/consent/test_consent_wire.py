"""Every stored consent event to its closedloop.consent.v1 message, as decoded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from closedloop.bus.cloudevents import Envelope, EnvelopeError, decode_payload
from closedloop.consent.v1 import events_pb2, types_pb2
from closedloop.eventstore.metadata import META_ATTRIBUTE, EventMeta
from closedloop.protobuf import to_datetime
from closedloop.testing.wire import envelope_for as shared_envelope_for
from closedloop.testing.wire import received as shared_received
from services.consent import wire
from services.consent.domain import ChangeRequest, ChannelPreferences, Consent, Evidence
from services.consent.vocabulary import EVERY_CHANNEL

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

T0 = datetime(2024, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
DIGEST = "c0ffee" * 10 + "beef"
LEAD_ID = uuid.UUID("0d2f4a6c-8e1b-4d3f-a5c7-e9b1d3f5a7c9")

#: Every event type the service publishes, with its message's name.
MESSAGE_NAMES = {
    "Consent.Granted": "ConsentGranted",
    "Consent.Withdrawn": "ConsentWithdrawn",
    "Consent.PreferencesChanged": "PreferencesChanged",
    "Consent.SubjectErased": "SubjectErased",
}

NOT_PUBLISHED = {"idempotency_key"}


def change(
    purpose: str,
    channel: str,
    method: str,
    *,
    source_system: str = "web_form",
    legal_basis: str = "consent",
    email: str = "",
    email_digest: str = "",
    key: str = "",
    days: int = 0,
) -> ChangeRequest:
    return ChangeRequest(
        purpose=purpose,
        channel=channel,
        source_system=source_system,
        method=method,
        occurred_at=T0 + timedelta(days=days),
        legal_basis=legal_basis,
        evidence=Evidence(
            notice_version="privacy-2024-02",
            notice_hash="sha256:9f2c01",
            capture_method="checkbox newsletter-footer",
            request_origin="198.51.100.4 Firefox/125",
            detail="ticket 4411",
        ),
        email=email,
        email_digest=email_digest,
        idempotency_key=key,
    )


def consent_events() -> list[Any]:
    """Real events from the aggregate: every type, some in more than one shape."""
    by_email = Consent.for_email(DIGEST)
    by_email.grant(
        change(
            "newsletter",
            "email",
            "double_opt_in_requested",
            email="ann@example.com",
            email_digest=DIGEST,
            key="form-1",
        )
    )
    by_email.grant(
        change(
            "newsletter",
            "email",
            "double_opt_in_confirmed",
            email="ann@example.com",
            email_digest=DIGEST,
            days=1,
        )
    )
    by_email.set_preferences(
        [
            ChannelPreferences("email", ("product", "events"), "weekly"),
            ChannelPreferences("sms", (), "never"),
        ],
        "preference_centre",
        T0,
        email="ann@example.com",
        email_digest=DIGEST,
        idempotency_key="prefs-1",
    )
    by_email.erase(T0 + timedelta(days=9))

    lead = Consent.for_lead(LEAD_ID)
    lead.grant(
        change(
            "sales_contact",
            "phone",
            "sales_rep",
            source_system="call_centre",
            legal_basis="legitimate_interest",
            email="ann@example.com",
            email_digest=DIGEST,
        )
    )
    lead.withdraw(change("all", "email", "unsubscribe_link", days=2))
    lead.withdraw(
        change(
            "direct_marketing_objection",
            EVERY_CHANNEL,
            "api",
            source_system="api",
            days=3,
        )
    )
    lead.record_global_privacy_control(T0 + timedelta(days=4))
    lead.set_preferences(
        [ChannelPreferences("in_app", ("billing",), "immediate")], "api", T0
    )
    lead.erase(T0 + timedelta(days=5), email_digest=DIGEST)

    return [*by_email.collect_events(), *lead.collect_events()]


def envelope_for(event: Any, message: Message, **meta: str) -> Envelope:
    return shared_envelope_for(event, message, wire.SOURCE, **meta)


def published(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in NOT_PUBLISHED}


def _lead_id(value: str) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def _change(
    message: events_pb2.ConsentGranted | events_pb2.ConsentWithdrawn,
) -> dict[str, Any]:
    return {
        "change_id": uuid.UUID(message.change_id),
        "purpose": wire.name(wire.PURPOSE, message.purpose),
        "channel": wire.name(wire.CHANNEL, message.channel),
        "legal_basis": wire.name(wire.LEGAL_BASIS, message.legal_basis),
        "source_system": wire.name(wire.SOURCE_SYSTEM, message.source_system),
        "method": wire.name(wire.METHOD, message.method),
        "notice_version": message.evidence.notice_version,
        "notice_hash": message.evidence.notice_hash,
        "capture_method": message.evidence.capture_method,
        "request_origin": message.evidence.request_origin,
        "evidence_detail": message.evidence.detail,
        "lead_id": _lead_id(message.lead_id),
        "email": message.email,
        "email_digest": message.email_digest,
        "occurred_at": to_datetime(message.occurred_at),
    }


#: What each message's fields are, read back in the domain's terms.
MESSAGE_ATTRIBUTES: dict[type[Message], Callable[[Any], dict[str, Any]]] = {
    events_pb2.ConsentGranted: _change,
    events_pb2.ConsentWithdrawn: _change,
    events_pb2.PreferencesChanged: lambda m: {
        "change_id": uuid.UUID(m.change_id),
        "preferences": [
            {
                "channel": wire.name(wire.CHANNEL, p.channel),
                "topics": list(p.topics),
                "frequency": wire.name(wire.FREQUENCY, p.frequency),
            }
            for p in m.preferences
        ],
        "source_system": wire.name(wire.SOURCE_SYSTEM, m.source_system),
        "lead_id": _lead_id(m.lead_id),
        "email": m.email,
        "email_digest": m.email_digest,
        "occurred_at": to_datetime(m.occurred_at),
    },
    events_pb2.SubjectErased: lambda m: {
        "lead_id": _lead_id(m.lead_id),
        "email_digest": m.email_digest,
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


def rebuilt(event: Any) -> Any:
    """The event as a consumer can construct it from what its message carries."""
    _, carried = received(event)
    unpublished = {name: "" for name in NOT_PUBLISHED if name in vars(event)}
    return type(event)(**carried, **unpublished)


def test_the_scenario_produces_every_event_type() -> None:
    assert {type(e).__qualname__ for e in consent_events()} == {
        *MESSAGE_NAMES,
        "Consent.Opened",
    }


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_event_is_carried_whole_by_its_message(qualname: str) -> None:
    events = [e for e in consent_events() if type(e).__qualname__ == qualname]
    assert len(events) >= 2
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
def test_rebuilt_events_rebuild_the_same_record(qualname: str) -> None:
    """A consumer replaying the messages folds the same history as the service."""
    events = consent_events()
    records: dict[uuid.UUID, Consent] = {}
    rebuilt_records: dict[uuid.UUID, Consent] = {}
    for original in events:
        records[original.originator_id] = original.mutate(
            records.get(original.originator_id)
        )
        again = (
            rebuilt(original)
            if type(original).__qualname__ in MESSAGE_NAMES
            else original
        )
        rebuilt_records[again.originator_id] = again.mutate(
            rebuilt_records.get(again.originator_id)
        )
    for record_id, record in records.items():
        again = rebuilt_records[record_id]
        assert again.changes == record.changes
        assert again.preference_changes == record.preference_changes
        assert again.erasures == record.erasures


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_event_meta_travels_in_the_envelope(qualname: str) -> None:
    original = next(e for e in consent_events() if type(e).__qualname__ == qualname)
    meta = EventMeta.new(correlation_id="corr-1", causation_id="cause-1")
    meta.attach(original)

    _, carried = received(original, **meta.as_dict())

    assert EventMeta(**carried[META_ATTRIBUTE]) == meta
    assert published(carried) == published(vars(original))


@pytest.mark.parametrize("qualname", MESSAGE_NAMES)
def test_message_names_follow_events_proto(qualname: str) -> None:
    original = next(e for e in consent_events() if type(e).__qualname__ == qualname)
    message = wire.to_message(original)
    assert message is not None
    expected = f"closedloop.consent.v1.{MESSAGE_NAMES[qualname]}"
    assert message.DESCRIPTOR.full_name == expected
    assert message.DESCRIPTOR.file is events_pb2.DESCRIPTOR


def test_every_message_of_events_proto_is_published() -> None:
    assert set(events_pb2.DESCRIPTOR.message_types_by_name) == set(
        MESSAGE_NAMES.values()
    )


def test_opening_a_record_is_not_published() -> None:
    opened = [e for e in consent_events() if isinstance(e, Consent.Opened)]
    assert len(opened) == 2
    assert all(wire.to_message(e) is None for e in opened)


def test_messages_carry_what_a_consumer_needs() -> None:
    messages = [wire.to_message(e) for e in consent_events()]
    granted = [m for m in messages if isinstance(m, events_pb2.ConsentGranted)]
    withdrawn = [m for m in messages if isinstance(m, events_pb2.ConsentWithdrawn)]
    erased = [m for m in messages if isinstance(m, events_pb2.SubjectErased)]
    preferences = [m for m in messages if isinstance(m, events_pb2.PreferencesChanged)]

    first = granted[0]
    assert first.purpose == types_pb2.PURPOSE_NEWSLETTER
    assert first.channel == types_pb2.CHANNEL_EMAIL
    assert first.method == types_pb2.METHOD_DOUBLE_OPT_IN_REQUESTED
    assert first.source_system == types_pb2.SOURCE_SYSTEM_WEB_FORM
    assert first.legal_basis == types_pb2.LEGAL_BASIS_CONSENT
    assert first.evidence.notice_version == "privacy-2024-02"
    assert first.evidence.notice_hash == "sha256:9f2c01"
    assert first.evidence.request_origin == "198.51.100.4 Firefox/125"
    assert first.email_digest == DIGEST
    assert first.lead_id == ""
    assert first.occurred_at.ToDatetime(tzinfo=UTC) == T0
    assert first.subject_aggregate_id == str(Consent.for_email(DIGEST).id)
    uuid.UUID(first.change_id)
    assert granted[2].lead_id == str(LEAD_ID)
    assert granted[2].legal_basis == types_pb2.LEGAL_BASIS_LEGITIMATE_INTEREST

    assert [(m.purpose, m.channel, m.method) for m in withdrawn] == [
        (
            types_pb2.PURPOSE_ALL,
            types_pb2.CHANNEL_EMAIL,
            types_pb2.METHOD_UNSUBSCRIBE_LINK,
        ),
        (
            types_pb2.PURPOSE_DIRECT_MARKETING_OBJECTION,
            types_pb2.CHANNEL_UNSPECIFIED,
            types_pb2.METHOD_API,
        ),
        (
            types_pb2.PURPOSE_THIRD_PARTY_SHARING,
            types_pb2.CHANNEL_UNSPECIFIED,
            types_pb2.METHOD_GPC,
        ),
        (
            types_pb2.PURPOSE_PROFILING,
            types_pb2.CHANNEL_UNSPECIFIED,
            types_pb2.METHOD_GPC,
        ),
    ]
    assert {m.source_system for m in withdrawn[2:]} == {types_pb2.SOURCE_SYSTEM_GPC}

    assert [(m.lead_id, m.email_digest) for m in erased] == [
        ("", DIGEST),
        (str(LEAD_ID), DIGEST),
    ]
    assert set(erased[0].DESCRIPTOR.fields_by_name) == {
        "subject_aggregate_id",
        "lead_id",
        "email_digest",
        "occurred_at",
    }

    assert [p.lead_id for p in preferences] == ["", str(LEAD_ID)]
    changed = preferences[0]
    assert [(p.channel, list(p.topics), p.frequency) for p in changed.preferences] == [
        (types_pb2.CHANNEL_EMAIL, ["product", "events"], types_pb2.FREQUENCY_WEEKLY),
        (types_pb2.CHANNEL_SMS, [], types_pb2.FREQUENCY_NEVER),
    ]


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
