"""The relay: the event store is the outbox, and this publishes it to JetStream.

It follows the store's notification log, publishes each event with `Nats-Msg-Id` set
to the event's id (JetStream drops a duplicate), and advances its stored position
only after JetStream acknowledged. A gap in the notification ids may be a transaction
that has not committed yet: the relay waits for it a while, then goes on but keeps
looking for the missing ids, so an event committed late is still published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors

from closedloop import retry
from closedloop.bus.cloudevents import RELAY_POSITION_HEADER
from closedloop.relay.outbox import OutboxUnavailableError, event_id
from closedloop.relay.positions import RelayPositions, RelayState

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.client import Client

    from closedloop.relay.outbox import Outbox, WireEvent

__all__ = ["Relay", "RelaySettings", "event_id"]

log = logging.getLogger(__name__)

#: What the relay waits out: NATS or the store (its outbox worker) being away.
_UNAVAILABLE = (nats.errors.Error, nats.js.errors.Error, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class RelaySettings:
    #: Events per read of the store. Large batches matter when catching up: each read
    #: is a round trip to the outbox worker and a round of acknowledgements.
    batch_size: int = 1024
    poll_interval: float = 0.5
    publish_timeout: float = 5.0
    #: How long a gap in notification ids may be a transaction still committing.
    gap_timeout: float = 5.0
    #: How long a skipped id is still looked for, in case it commits very late.
    gap_horizon: float = 900.0
    max_backoff: float = 5.0
    #: Batches sent before the first one's acknowledgements are awaited.
    window: int = 4
    #: While busy, the stored position is written at most this often.
    save_interval: float = 1.0
    #: After a wake-up, how long to wait for more commits before reading: a few
    #: events per read and publish instead of one (each costs a thread hop and a
    #: round of acknowledgements), for a few milliseconds of latency.
    linger: float = 0.01


class Relay:
    """Publishes one service's stored events into its context stream."""

    def __init__(
        self,
        *,
        name: str,
        outbox: Outbox,
        nc: Client,
        stream: str,
        positions: RelayPositions,
        settings: RelaySettings | None = None,
    ) -> None:
        self.name = name
        self.outbox = outbox
        self._nc = nc
        self._js = nc.jetstream()
        self._stream = stream
        self._positions = positions
        self.settings = settings or RelaySettings()
        self.state = RelayState()
        self._first_seen_missing: dict[int, float] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.published = 0
        self.ready = asyncio.Event()
        self._in_flight: deque[tuple[list[asyncio.Future[Any]], int]] = deque()
        self._sent_position = 0
        self._saved: RelayState | None = None
        self._last_save = 0.0
        #: The highest notification id this process is known to have committed.
        self._committed = 0
        #: When the last read was asked for, if it came back short: the log was read
        #: out as of then (None: it was not). See `_caught_up_since`.
        self._caught_up_at: float | None = None
        #: When a commit of unknown id was last reported (a wake-up without one).
        self._unknown_commit_at = 0.0
        #: The next batch, read while the last one is published: (from id, when
        #: asked, the read). Reading and mapping overlap with publishing.
        self._read_ahead: tuple[int, float, asyncio.Future[list[WireEvent]]] | None = (
            None
        )

    @property
    def position(self) -> int:
        return self.state.position

    def wake(self, committed: int = 0) -> None:
        """Thread-safe: called by the writer thread after every save.

        `committed` is the last notification id that save took: until the relay
        has sent that far it knows there is more to read, and past it, that there
        is nothing new from this process until the next wake-up or poll. Without
        it (0), the relay reads the store at its next turn whatever it knew.
        """
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._woken, committed)

    def _woken(self, committed: int) -> None:
        if committed:
            self._committed = max(self._committed, committed)
        else:
            self._unknown_commit_at = time.monotonic()
        self._wake.set()

    def _caught_up_since(self) -> float | None:
        """When the log was last found read out, unless that is no longer known.

        A commit of unknown id reported after that read may have missed it: then
        look, do not assume.
        """
        at = self._caught_up_at
        return at if at is not None and at > self._unknown_commit_at else None

    def _nothing_new(self) -> bool:
        """Found the store read out lately and sent all this process committed since.

        Then a read would come back empty: skip it. Another writer's commits (or a
        transaction this relay saw as a gap) show up at the next poll, at most
        `poll_interval` later.
        """
        since = self._caught_up_since()
        return (
            since is not None
            and self._sent_position >= self._committed
            and not self.state.open_gaps
            and not self._first_seen_missing
            and time.monotonic() - since < self.settings.poll_interval
        )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        # The backoff starts again from its first delay after every step that worked.
        backoff = retry.Backoff(first=0.1, cap=self.settings.max_backoff, jitter=0.5)
        while True:
            progressed = await retry.call_async(
                self._resume_and_step,
                on=_UNAVAILABLE,
                backoff=backoff,
                before_retry=self._unavailable,
            )
            if not progressed or self._at_tail_with_nothing_in_flight():
                # asyncio.timeout, not wait_for: on CPython 3.11 wait_for can swallow
                # a cancellation that lands as the wake-up does, and a service
                # stopping its relay would then wait for it forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval):
                        await self._wake.wait()
                if self._wake.is_set() and self.settings.linger > 0:
                    await asyncio.sleep(self.settings.linger)
                self._wake.clear()

    async def _resume_and_step(self) -> bool:
        if not self.ready.is_set():
            await self._resume()
            self.ready.set()
        return await self.step()

    def _unavailable(self, error: BaseException) -> None:
        log.warning(
            "relay %s: %s unavailable (%s); retrying",
            self.name,
            "store" if isinstance(error, OutboxUnavailableError) else "NATS",
            error,
        )

    def _may_send_another_batch(self) -> bool:
        """A backlog fills the window; at the tail, new commits gather meanwhile."""
        if self._in_flight and self._caught_up_since() is not None:
            return False
        return len(self._in_flight) < self.settings.window

    def _at_tail_with_nothing_in_flight(self) -> bool:
        """Then the next read would find only what commits from now on.

        Waiting for a wake-up (and lingering) gathers those commits into one read
        and one round of acknowledgements, instead of chasing every commit alone.
        """
        return self._caught_up_since() is not None and not self._in_flight

    async def _resume(self) -> None:
        """Starts from what the stream already holds: no duplicates, no gaps."""
        await self.outbox.open()
        stored = await asyncio.to_thread(self._positions.load, self.name)
        in_stream = await self._stream_position()
        if in_stream is None:
            if stored.position:
                log.warning(
                    "relay %s: stream %s holds none of our events; republishing "
                    "from the start of the store",
                    self.name,
                    self._stream,
                )
            self.state = RelayState(position=0, open_gaps={})
        else:
            if in_stream != stored.position:
                log.info(
                    "relay %s: resuming at %d from the stream (stored %d)",
                    self.name,
                    in_stream,
                    stored.position,
                )
            self.state = RelayState(position=in_stream, open_gaps=stored.open_gaps)
        await asyncio.to_thread(self._positions.save, self.name, self.state)
        self._saved = self.state
        self._last_save = time.monotonic()
        self._sent_position = self.state.position
        self._in_flight.clear()

    async def _stream_position(self) -> int | None:
        info = await self._js.stream_info(self._stream)
        if info.state.messages == 0:
            return None
        msg = await self._js.get_msg(self._stream, seq=info.state.last_seq)
        value = (msg.headers or {}).get(RELAY_POSITION_HEADER)
        return int(value) if value is not None else None

    async def step(self) -> bool:
        """Publishes what is ready; True if anything moved.

        Reading, mapping and sending the next batches overlaps with waiting for the
        acknowledgements of earlier ones (a window of batches in flight). The stored
        position only ever moves to the end of a batch whose every message was
        acknowledged, in order; any failure drops the window and sends again from
        there (JetStream drops the duplicates by message id).
        """
        if not self._nc.is_connected:
            raise nats.errors.ConnectionClosedError
        moved = False
        if not self._in_flight:
            moved = await self._publish_late_arrivals()
            self._sent_position = self.state.position
        try:
            while self._may_send_another_batch():
                batch = await self._send_next_batch()
                if batch is None:
                    break
                self._in_flight.append(batch)
            if not self._in_flight:
                await self._save_position(force=False)
                return moved
            futures, position = self._in_flight[0]
            if futures:
                await self._acknowledged(futures)
            self._in_flight.popleft()
        except BaseException:
            self._drop_read_ahead()
            for futures, _ in self._in_flight:
                for future in futures:
                    future.cancel()
            self._in_flight.clear()
            self._sent_position = self.state.position
            raise
        self.state = RelayState(position=position, open_gaps=self.state.open_gaps)
        await self._save_position(force=False)
        return True

    async def _send_next_batch(self) -> tuple[list[asyncio.Future[Any]], int] | None:
        if self._nothing_new():
            return None
        read_at, events = await self._read(self._sent_position + 1)
        ready, new_position, skipped = self._contiguous(events, self._sent_position)
        # A short batch is the tail of the log as of `read_at`.
        short = len(events) < self.settings.batch_size
        self._caught_up_at = read_at if short else None
        if new_position == self._sent_position:
            return None
        if len(events) == len(ready) == self.settings.batch_size:
            self._read_next(new_position + 1)  # a backlog: read on while sending
        if skipped:
            # Remember the missing ids before moving past them, so that a crash
            # cannot forget an event that commits late.
            gaps = dict(self.state.open_gaps)
            gaps.update(dict.fromkeys(skipped, time.time()))
            self.state = RelayState(position=self.state.position, open_gaps=gaps)
            await self._save_position(force=True)
        futures = await self._send(ready)
        self._sent_position = new_position
        return futures, new_position

    async def _read(self, start: int) -> tuple[float, list[WireEvent]]:
        """The batch from `start` on, and when it was asked for."""
        ahead, self._read_ahead = self._read_ahead, None
        if ahead is not None:
            ahead_start, asked_at, read = ahead
            if ahead_start == start:
                return asked_at, await read
            read.cancel()
        asked_at = time.monotonic()
        return asked_at, await self.outbox.read(start, self.settings.batch_size)

    def _read_next(self, start: int) -> None:
        read = self.outbox.read(start, self.settings.batch_size)
        # A read dropped after a failure may fail too: nobody else will look at it.
        read.add_done_callback(lambda r: r.cancelled() or r.exception())
        self._read_ahead = (start, time.monotonic(), read)

    def _drop_read_ahead(self) -> None:
        ahead, self._read_ahead = self._read_ahead, None
        if ahead is not None:
            ahead[2].cancel()

    async def close(self) -> None:
        """Lets go of the outbox (its worker process) once the relay has stopped."""
        self._drop_read_ahead()
        await self.outbox.close()

    async def save_position(self) -> None:
        """Stores the position now if it moved: on a graceful stop."""
        await self._save_position(force=True)

    async def _save_position(self, *, force: bool) -> None:
        """Stores the position at most once a second (`save_interval`).

        Not after every batch: on SQLite that write would take the store's write
        lock between two commands' commits. The stream's last message carries the
        position too, and a restart resumes from there; an idle relay stores it on
        its next poll. Skipped ids are stored at once (`force`): nothing else
        remembers them.
        """
        now = time.monotonic()
        if self._saved == self.state or (
            not force and now - self._last_save < self.settings.save_interval
        ):
            return
        await asyncio.to_thread(self._positions.save, self.name, self.state)
        self._saved = self.state
        self._last_save = now

    def _contiguous(
        self, events: Sequence[WireEvent], after: int
    ) -> tuple[list[WireEvent], int, list[int]]:
        """The events that may go now, the position after them, ids skipped."""
        expected = after + 1
        ready: list[WireEvent] = []
        skipped: list[int] = []
        now = time.monotonic()
        for event in events:
            position = event[0]
            if position > expected:
                missing = range(expected, position)
                first = [self._first_seen_missing.setdefault(i, now) for i in missing]
                if now - max(first) < self.settings.gap_timeout:
                    break  # maybe still committing: wait for it
                skipped.extend(missing)
                for i in missing:
                    self._first_seen_missing.pop(i, None)
            ready.append(event)
            expected = position + 1
        return ready, expected - 1, skipped

    async def _publish_late_arrivals(self) -> bool:
        gaps = self.state.open_gaps
        if not gaps:
            return False
        horizon = time.time() - self.settings.gap_horizon
        low, high = min(gaps), max(gaps)
        found = await self.outbox.read(low, high - low + 1, high)
        late = [event for event in found if event[0] in gaps]
        if late:
            log.warning(
                "relay %s: publishing %d events committed late", self.name, len(late)
            )
            await self._publish(late, relay_position=self.state.position)
        remaining = {
            i: seen
            for i, seen in gaps.items()
            if seen >= horizon and i not in {event[0] for event in late}
        }
        if remaining != gaps:
            self.state = RelayState(position=self.state.position, open_gaps=remaining)
            await asyncio.to_thread(self._positions.save, self.name, self.state)
        return bool(late)

    async def _send(
        self,
        events: Sequence[WireEvent],
        *,
        relay_position: int | None = None,
    ) -> list[asyncio.Future[Any]]:
        """Sends without waiting: the acknowledgements are awaited by the caller.

        Each message carries the relay position reached once it is stored (its own
        notification id, or the current position for an event committed late), so
        that the stream's last message says where to resume.
        """
        futures = []
        publish = self._js.publish_async
        for position, subject, payload, headers in events:
            if not subject:
                continue  # bookkeeping of the service itself, not a published fact
            headers[RELAY_POSITION_HEADER] = str(relay_position or position)
            futures.append(await publish(subject, payload, headers=headers))
        return futures

    async def _publish(
        self,
        events: Sequence[WireEvent],
        *,
        relay_position: int | None = None,
    ) -> None:
        futures = await self._send(events, relay_position=relay_position)
        if futures:
            await self._acknowledged(futures)

    async def _acknowledged(self, futures: list[asyncio.Future[Any]]) -> None:
        """Waits for every acknowledgement, at most `publish_timeout` (TimeoutError)."""
        async with asyncio.timeout(self.settings.publish_timeout):
            await asyncio.gather(*futures)
        self.published += len(futures)
