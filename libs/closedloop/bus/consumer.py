"""Durable pull consumers for the events of other contexts.

A service learns what other contexts did from their streams. Each consumer is a durable
JetStream consumer that acknowledges a message only after the handler's command was
committed: delivery at least once, and handlers are idempotent, so the effect happens
once. A message that cannot be decoded, or whose command is refused for good, is
terminated with a log line instead of blocking the consumer forever.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from closedloop import retry
from closedloop.bus.cloudevents import Envelope, EnvelopeError, decode_payload
from closedloop.errors import ConcurrencyConflict, DomainError, Unavailable
from closedloop.eventstore.metadata import EventMeta

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from google.protobuf.message import Message
    from nats.aio.client import Client
    from nats.aio.msg import Msg

log = logging.getLogger(__name__)


def caused_by(envelope: Envelope) -> EventMeta:
    """Events recorded in reaction keep the trace and name the event that caused it."""
    return EventMeta.new(
        correlation_id=envelope.correlation_id,
        causation_id=envelope.event_id,
        traceparent=envelope.traceparent,
    )


@dataclass(frozen=True)
class Subscription:
    """What a service follows: `<service>-<purpose>` on a stream, by subjects."""

    durable: str
    stream: str
    subjects: tuple[str, ...]
    max_deliver: int = 20
    ack_wait_seconds: float = 30.0


@dataclass(frozen=True)
class ConsumerSpec:
    subscription: Subscription
    handler: Callable[[Message, Envelope], Awaitable[None]]


class EventConsumer:
    """Fetches batches, runs the handler per message, acks after it returned."""

    def __init__(
        self,
        nc: Client,
        spec: ConsumerSpec,
        *,
        batch: int = 64,
        retry_delay: float = 1.0,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.subscription = spec.subscription
        self._handler = spec.handler
        self._batch = batch
        self._retry_delay = retry_delay
        self.handled = 0
        self.terminated = 0

    async def _bind(self) -> nats.js.JetStreamContext.PullSubscription:
        sub = self.subscription
        config = ConsumerConfig(
            durable_name=sub.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=sub.ack_wait_seconds,
            max_deliver=sub.max_deliver,
            filter_subjects=list(sub.subjects),
            max_ack_pending=1000,
        )
        await self._js.add_consumer(sub.stream, config)
        return await self._js.pull_subscribe_bind(
            durable=sub.durable, stream=sub.stream
        )

    async def run(self) -> None:
        psub = await retry.call_async(
            self._bind,
            on=(nats.errors.Error, nats.js.errors.Error, TimeoutError),
            backoff=retry.Backoff.constant(self._retry_delay),
            before_retry=lambda error: log.info(
                "%s: waiting for stream %s (%s)",
                self.subscription.durable,
                self.subscription.stream,
                error,
            ),
        )
        while True:
            try:
                messages = await psub.fetch(self._batch, timeout=1.0)
            except TimeoutError:
                continue
            except (nats.errors.Error, nats.js.errors.Error) as error:
                log.warning("%s: fetch failed (%s)", self.subscription.durable, error)
                await asyncio.sleep(self._retry_delay)
                continue
            for msg in messages:
                await self._handle(msg)

    async def _handle(self, msg: Msg) -> None:
        try:
            envelope = Envelope.from_headers(msg.headers)
            message = decode_payload(envelope.event_type, msg.data)
        except (EnvelopeError, ValueError):
            log.exception(
                "%s: undecodable message on %s", self.subscription.durable, msg.subject
            )
            self.terminated += 1
            await msg.term()
            return
        try:
            await self._handler(message, envelope)
        except (ConcurrencyConflict, Unavailable) as error:
            log.warning("%s: %s; redelivering", self.subscription.durable, error)
            await msg.nak(delay=self._retry_delay)
            return
        except DomainError:
            log.exception(
                "%s: event %s refused for good",
                self.subscription.durable,
                envelope.event_id,
            )
            self.terminated += 1
            await msg.term()
            return
        except Exception:
            log.exception(
                "%s: handler failed on %s; redelivering",
                self.subscription.durable,
                envelope.event_id,
            )
            await msg.nak(delay=self._retry_delay)
            return
        await msg.ack()  # only after the command was committed
        self.handled += 1
