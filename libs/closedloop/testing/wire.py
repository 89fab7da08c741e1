"""A domain event's wire form as a subscriber receives it: decoded, ready to compare."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from closedloop.bus.cloudevents import Envelope, decode_payload
from closedloop.eventstore.metadata import META_ATTRIBUTE, EventMeta

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from google.protobuf.message import Message


def envelope_for(event: Any, message: Message, source: str, **meta: str) -> Envelope:
    """`meta`: correlation_id, causation_id, traceparent."""
    return Envelope(
        event_id=str(uuid.uuid4()),
        event_type=message.DESCRIPTOR.full_name,
        source=source,
        subject=str(event.originator_id),
        time=event.timestamp,
        sequence=event.originator_version,
        correlation_id=meta.get("correlation_id", ""),
        causation_id=meta.get("causation_id", ""),
        traceparent=meta.get("traceparent", ""),
    )


def received(
    event: Any,
    *,
    to_message: Callable[[Any], Message | None],
    source: str,
    read: Mapping[type[Message], Callable[[Any], dict[str, Any]]],
    **meta: str,
) -> tuple[Message, dict[str, Any]]:
    """The event's message as a subscriber decodes it, and the attributes it carries.

    Payload bytes and headers are decoded by ce-type; `read` gives each message
    type's fields in the domain's terms, by attribute name, and the headers add the
    event's id, version, timestamp and metadata.
    """
    message = to_message(event)
    assert message is not None
    envelope = envelope_for(event, message, source, **meta)
    received_envelope = Envelope.from_headers(envelope.headers())
    assert received_envelope == envelope
    decoded = decode_payload(received_envelope.event_type, message.SerializeToString())
    assert decoded == message
    attributes = read[type(decoded)](decoded)
    return decoded, {**attributes, **_envelope_attributes(received_envelope)}


def _envelope_attributes(envelope: Envelope) -> dict[str, Any]:
    """The stored event's attributes that travel in the headers, by their names."""
    attributes: dict[str, Any] = {
        "originator_id": uuid.UUID(envelope.subject),
        "originator_version": envelope.sequence,
        "timestamp": envelope.time,
    }
    if envelope.correlation_id or envelope.causation_id or envelope.traceparent:
        attributes[META_ATTRIBUTE] = EventMeta(
            envelope.correlation_id, envelope.causation_id, envelope.traceparent
        ).as_dict()
    return attributes
