"""CloudEvents binary mode over NATS: protobuf payload, metadata in headers."""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pool, message_factory

if TYPE_CHECKING:
    from collections.abc import Mapping

    from google.protobuf.message import Message

SPECVERSION = "1.0"
CONTENT_TYPE = "application/protobuf"

#: Header with the event's position in its service's store (notification id).
POSITION_HEADER = "Closedloop-Position"
#: Header with the relay's contiguous position once this message is acknowledged.
RELAY_POSITION_HEADER = "Closedloop-Relay-Position"
MSG_ID_HEADER = "Nats-Msg-Id"


class EnvelopeError(ValueError):
    """A message on the bus lacks or garbles a required CloudEvents header."""


@dataclass(frozen=True)
class Envelope:
    """The metadata of one event on the wire, apart from its payload."""

    event_id: str
    event_type: str
    source: str
    subject: str
    time: datetime
    sequence: int
    correlation_id: str = ""
    causation_id: str = ""
    traceparent: str = ""
    position: int = 0

    @property
    def nats_subject(self) -> str:
        """`closedloop.<context>.v<N>.<Message>`: the protobuf full name."""
        return self.event_type

    def headers(self, *, relay_position: int | None = None) -> dict[str, str]:
        headers = binary_mode_headers(
            event_id=self.event_id,
            event_type=self.event_type,
            source=self.source,
            subject=self.subject,
            time=self.time,
            sequence=self.sequence,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            traceparent=self.traceparent,
            position=self.position,
        )
        if relay_position is not None:
            headers[RELAY_POSITION_HEADER] = str(relay_position)
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> Envelope:
        if not headers:
            raise EnvelopeError("message has no CloudEvents headers")
        try:
            return cls(
                event_id=headers["ce-id"],
                event_type=headers["ce-type"],
                source=headers["ce-source"],
                subject=headers.get("ce-subject", ""),
                time=datetime.fromisoformat(headers["ce-time"]),
                sequence=int(headers.get("ce-sequence", "0")),
                correlation_id=headers.get("ce-correlationid", ""),
                causation_id=headers.get("ce-causationid", ""),
                traceparent=headers.get("traceparent", ""),
                position=int(headers.get(POSITION_HEADER, "0")),
            )
        except (KeyError, ValueError) as error:
            raise EnvelopeError(f"bad CloudEvents header: {error}") from error


def binary_mode_headers(
    *,
    event_id: str,
    event_type: str,
    source: str,
    subject: str,
    time: datetime,
    sequence: int,
    correlation_id: str,
    causation_id: str,
    traceparent: str,
    position: int,
) -> dict[str, str]:
    """The headers of one event; the relay calls this for every event it sends."""
    if time.tzinfo is not UTC:
        time = time.astimezone(UTC)
    headers = {
        MSG_ID_HEADER: event_id,
        "ce-specversion": SPECVERSION,
        "ce-id": event_id,
        "ce-type": event_type,
        "ce-source": source,
        "ce-subject": subject,
        "ce-time": time.isoformat().replace("+00:00", "Z"),
        "ce-sequence": str(sequence),
        "ce-correlationid": correlation_id,
        "ce-causationid": causation_id,
        "content-type": CONTENT_TYPE,
        POSITION_HEADER: str(position),
    }
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


def decode_payload(event_type: str, payload: bytes) -> Message:
    """Decodes a payload by its ce-type, for any message compiled into this process."""
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName(event_type)
    except KeyError:
        # closedloop.<context>.v1.<Name> lives in closedloop.<context>.v1.events_pb2.
        package = event_type.rpartition(".")[0]
        with contextlib.suppress(ImportError):
            importlib.import_module(f"{package}.events_pb2")
        try:
            descriptor = pool.FindMessageTypeByName(event_type)
        except KeyError as error:
            raise EnvelopeError(f"unknown event type {event_type!r}") from error
    message = message_factory.GetMessageClass(descriptor)()
    message.ParseFromString(payload)
    return message
