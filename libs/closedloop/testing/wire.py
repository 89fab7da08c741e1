"""A domain event through its wire form and back, as a subscriber receives it."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from closedloop.bus.cloudevents import Envelope, decode_payload

if TYPE_CHECKING:
    from collections.abc import Callable

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


def round_trip(
    event: Any,
    *,
    to_message: Callable[[Any], Message | None],
    from_message: Callable[[Message, Envelope], Any],
    source: str,
    **meta: str,
) -> Any:
    """Payload bytes and headers, decoded by ce-type, mapped back to a domain event."""
    message = to_message(event)
    assert message is not None
    envelope = envelope_for(event, message, source, **meta)
    received_envelope = Envelope.from_headers(envelope.headers())
    assert received_envelope == envelope
    received = decode_payload(received_envelope.event_type, message.SerializeToString())
    assert received == message
    return from_message(received, received_envelope)
