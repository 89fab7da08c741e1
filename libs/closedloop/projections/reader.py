"""Reads the event log (CLOSEDLOOP_LOG) from a stream sequence on, in batches.

The position lives in the read store, not in NATS, so the reader needs no durable
state on the server: it makes an ephemeral pull consumer that starts at position + 1
(`deliver_policy=by_start_sequence`), acknowledges nothing, and is dropped and made
again whenever something goes wrong. One pull request is outstanding at a time, so at
most one batch of messages is ever held in memory.

It speaks the pull protocol directly (a no-wait request for what is there, then a
lingering request for one message when there was nothing): nats-py's `fetch` spends
a task and a timer on every message, which halves the rate of a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from closedloop.bus.streams import LOG_STREAM

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

_STATUS = "Status"
_NO_MESSAGES = "404"
_REQUEST_TIMEOUT = "408"
_HEARTBEAT = "100"


class ReaderReset(Exception):  # noqa: N818 - a signal to start over, not a failure
    """The pull consumer went away or stopped answering; open the reader again."""


@dataclass(frozen=True)
class LogMessage:
    """One message of the log as it was stored: sequence, subject, headers, payload."""

    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


@dataclass(frozen=True)
class Batch:
    messages: list[LogMessage]
    #: True when the log had no more messages at the moment of reading.
    at_head: bool


class LogReader:
    """An ephemeral, acknowledgement-free pull consumer on the log."""

    def __init__(
        self,
        nc: Client,
        *,
        stream: str = LOG_STREAM,
        batch_size: int = 500,
        subjects: tuple[str, ...] = (),
        inactive_threshold: float = 120.0,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.stream = stream
        self.batch_size = batch_size
        self._subjects = subjects
        self._inactive_threshold = inactive_threshold
        self._consumer = ""
        self._sub: Subscription | None = None
        self._inbox = ""
        self._buffer: list[Msg] = []
        self._done = asyncio.Event()
        self._expected = 0
        self._terminal = ""

    async def open(self, start_seq: int) -> None:
        await self.close()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(start_seq, 1),
            ack_policy=AckPolicy.NONE,
            inactive_threshold=self._inactive_threshold,
            mem_storage=True,
            num_replicas=1,
            max_waiting=4,
        )
        if self._subjects:
            config.filter_subjects = list(self._subjects)
        info = await self._js.add_consumer(self.stream, config)
        self._consumer = str(info.name)
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._consumer:
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(self.stream, self._consumer)
            self._consumer = ""

    async def last_seq(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def next_batch(self, max_wait: float = 1.0) -> Batch:
        """What the log has now (up to a batch); else waits up to `max_wait` for one.

        With `max_wait` 0 it never waits: an empty batch says the log has no more.

        Raises ReaderReset when the consumer stopped answering: reopen from the
        position after the last message applied.
        """
        if self._sub is None:
            raise ReaderReset("the reader is not open")
        messages = await self._request(
            {"batch": self.batch_size, "no_wait": True}, wait=10.0
        )
        if len(messages) == self.batch_size:
            return Batch(messages, at_head=False)
        if messages or max_wait <= 0:
            return Batch(messages, at_head=True)
        expires = max(int(max_wait * 1_000_000_000), 1_000_000)
        messages = await self._request(
            {"batch": 1, "expires": expires}, wait=max_wait + 10.0
        )
        return Batch(messages, at_head=not messages)

    async def _request(
        self, request: dict[str, object], *, wait: float
    ) -> list[LogMessage]:
        self._buffer = []
        self._terminal = ""
        self._expected = int(str(request["batch"]))
        self._done.clear()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self._consumer}"
        try:
            await self._nc.publish(
                subject, json.dumps(request).encode(), reply=self._inbox
            )
            await asyncio.wait_for(self._done.wait(), wait)
        except (TimeoutError, nats.errors.Error) as error:
            raise ReaderReset(f"pull request failed: {error!r}") from error
        if self._terminal not in {"", _NO_MESSAGES, _REQUEST_TIMEOUT}:
            raise ReaderReset(f"pull consumer answered status {self._terminal}")
        batch = self._buffer
        self._buffer = []
        return [_log_message(msg) for msg in batch]

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(_STATUS) if headers else None
        if status is not None and not msg.data:
            if status == _HEARTBEAT:
                return
            self._terminal = status
            self._done.set()
            return
        self._buffer.append(msg)
        if len(self._buffer) >= self._expected:
            self._done.set()


def _log_message(msg: Msg) -> LogMessage:
    return LogMessage(
        seq=int(msg.metadata.sequence.stream),
        subject=msg.subject,
        headers=dict(msg.headers or {}),
        data=msg.data,
    )


async def log_last_seq(nc: Client, stream: str = LOG_STREAM) -> int:
    try:
        info = await nc.jetstream().stream_info(stream)
    except nats.js.errors.NotFoundError:
        return 0
    return int(info.state.last_seq)
