"""Events with the envelope a relay gives them, in each context's publishing order."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from closedloop.bus.cloudevents import Envelope
from closedloop.bus.streams import LOG_STREAM
from closedloop.projections.reader import LogMessage

if TYPE_CHECKING:
    from collections.abc import Iterable

    from google.protobuf.message import Message
    from nats.aio.client import Client

NAMESPACE = uuid.UUID("5d0c8f46-0d7e-4f1e-9b7a-3d1c2b7a9e10")


@dataclass(frozen=True)
class Published:
    """One event with its envelope, ready for the wire."""

    envelope: Envelope
    message: Message

    @property
    def context(self) -> str:
        return self.envelope.event_type.split(".")[1]

    @property
    def subject(self) -> str:
        return self.envelope.nats_subject

    def headers(self) -> dict[str, str]:
        return self.envelope.headers()

    def data(self) -> bytes:
        return self.message.SerializeToString()


@dataclass
class EventLog:
    """Events in the order each context's relay would publish them."""

    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    events: list[Published] = field(default_factory=list)
    _versions: dict[str, int] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict)
    _tick: int = 0

    def add(
        self,
        message: Message,
        *,
        aggregate: str,
        recorded_at: datetime | None = None,
    ) -> Published:
        """Appends an event of `aggregate` (its next version), recorded now-ish."""
        event_type = message.DESCRIPTOR.full_name
        context = event_type.split(".")[1]
        version = self._versions.get(aggregate, 0) + 1
        self._versions[aggregate] = version
        position = self._positions.get(context, 0) + 1
        self._positions[context] = position
        self._tick += 1
        envelope = Envelope(
            event_id=str(uuid.uuid5(NAMESPACE, f"event:{aggregate}:{version}")),
            event_type=event_type,
            source=f"/closedloop/{context}",
            subject=aggregate,
            time=recorded_at or self.start + timedelta(seconds=self._tick),
            sequence=version,
            correlation_id=str(uuid.uuid5(NAMESPACE, f"correlation:{self._tick}")),
            position=position,
        )
        published = Published(envelope, message)
        self.events.append(published)
        return published

    def version_of(self, aggregate: str) -> int:
        return self._versions.get(aggregate, 0)

    def by_context(self) -> dict[str, list[Published]]:
        found: dict[str, list[Published]] = {}
        for event in self.events:
            found.setdefault(event.context, []).append(event)
        return found


async def publish(
    nc: Client, events: Iterable[Published], *, acknowledged: bool = True
) -> int:
    """Publishes onto the context subjects; returns how many were sent.

    With `acknowledged`, every message waits for JetStream's ack (Nats-Msg-Id set,
    so a repeat is dropped within the duplicate window); without, they are sent as
    fast as the connection allows, which a benchmark wants.
    """
    js = nc.jetstream()
    count = 0
    for event in events:
        if acknowledged:
            await js.publish(event.subject, event.data(), headers=event.headers())
        else:
            await nc.publish(event.subject, event.data(), headers=event.headers())
        count += 1
    await nc.flush()
    return count


async def wait_for_log(nc: Client, count: int, timeout: float = 60.0) -> int:
    """Until CLOSEDLOOP_LOG holds at least `count` messages; returns its last seq."""
    js = nc.jetstream()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.stream_info(LOG_STREAM)
        if info.state.messages >= count:
            return int(info.state.last_seq)
        if asyncio.get_running_loop().time() > deadline:
            msg = f"{LOG_STREAM} holds {info.state.messages} of {count} messages"
            raise TimeoutError(msg)
        await asyncio.sleep(0.05)


def log_messages(events: Iterable[Published], first_seq: int = 1) -> list[LogMessage]:
    """The events as the log would hold them, numbered from `first_seq`."""
    return [
        LogMessage(seq, event.subject, event.headers(), event.data())
        for seq, event in enumerate(events, start=first_seq)
    ]
