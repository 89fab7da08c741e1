"""Correlation, causation and trace ids that travel with every stored event."""

from __future__ import annotations

import random
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

#: Attribute under which the metadata is kept on a domain event (and so in its state).
META_ATTRIBUTE = "_meta"

_ids = random.Random(secrets.randbits(128))
_TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class EventMeta:
    """Who asked for an event: lets one command be followed across services."""

    correlation_id: str
    causation_id: str
    traceparent: str

    @classmethod
    def new(
        cls,
        *,
        correlation_id: str = "",
        causation_id: str = "",
        traceparent: str = "",
    ) -> EventMeta:
        if correlation_id and causation_id and _TRACEPARENT.match(traceparent):
            return cls(correlation_id[:128], causation_id[:128], traceparent)
        # Identifiers, not secrets: a seeded generator is enough and far cheaper
        # than a system call per request.
        random = _ids.getrandbits(192).to_bytes(24, "big")
        request_id = str(uuid.UUID(bytes=random[:16], version=4))
        return cls(
            correlation_id=correlation_id[:128] or request_id,
            causation_id=causation_id[:128] or request_id,
            traceparent=traceparent
            if _TRACEPARENT.match(traceparent)
            else f"00-{random[:16].hex()}-{random[16:].hex()}-01",
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "traceparent": self.traceparent,
        }

    def attach(self, domain_event: Any) -> None:
        """Events are frozen dataclasses: set it the way eventsourcing does."""
        object.__setattr__(domain_event, META_ATTRIBUTE, self.as_dict())

    @classmethod
    def of(cls, domain_event: Any) -> EventMeta | None:
        raw = cls.fields_of(domain_event)
        if raw is None:
            return None
        return cls(
            correlation_id=str(raw.get("correlation_id", "")),
            causation_id=str(raw.get("causation_id", "")),
            traceparent=str(raw.get("traceparent", "")),
        )

    @staticmethod
    def fields_of(domain_event: Any) -> dict[str, Any] | None:
        """The stored metadata as it is, without building an EventMeta (hot paths)."""
        raw = vars(domain_event).get(META_ATTRIBUTE)
        return raw if isinstance(raw, dict) else None


def new_traceparent() -> str:
    """A W3C trace context header for a trace that starts here."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
