"""The runner: follows the log for one generation of a projection.

Each batch is applied in one SQL transaction together with the new position, so a
crash at any moment either keeps the whole batch and its position or neither:
delivery is at least once, the effect exactly once. Events at or below the stored
position are skipped, which also makes two runners of one generation harmless.

A batch that fails is applied again event by event, each in a savepoint; an event
that fails `max_attempts` times is parked with its error and the batch goes on.
Database outages are not the event's fault: they retry the batch, without end.

Building (a new projection, or a new version, or a rebuild) is the same code path as
following live: a generation in state `building` switches to `active` the first time
it reaches the head of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
import sqlalchemy as sa
from google.protobuf.message import DecodeError

from closedloop import retry
from closedloop.bus.cloudevents import Envelope, EnvelopeError, decode_payload
from closedloop.projections.base import ApplyContext, Event
from closedloop.projections.reader import (
    LogMessage,
    LogReader,
    ReaderReset,
    log_last_seq,
)
from closedloop.projections.store import (
    ACTIVE,
    BUILDING,
    RETIRED,
    Generation,
    GenerationKey,
    ParkedEvent,
    ReadStore,
    generations,
    park_row,
    parked_events,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.aio.client import Client

    from closedloop.projections.base import Projection
    from closedloop.projections.reader import Batch

log = logging.getLogger(__name__)


_READ_ERRORS = (ReaderReset, nats.errors.Error, nats.js.errors.Error, TimeoutError)


class GenerationRetired(Exception):  # noqa: N818 - a state, not a failure
    """The generation was switched away from; its runner stops."""


@dataclass(frozen=True)
class RunnerSettings:
    batch_size: int = 500
    #: How long an idle read waits for the next event.
    max_wait: float = 1.0
    #: Attempts of one event before it is parked.
    max_attempts: int = 3
    heartbeat_seconds: float = 5.0
    retry_delay: float = 1.0


@dataclass(frozen=True)
class BatchResult:
    position: int
    applied: int
    parked: int


@dataclass(frozen=True)
class Progress:
    key: GenerationKey
    state: str
    position: int
    head: int
    applied: int
    parked: int


def is_transient(error: BaseException) -> bool:
    """A database that is away or busy, as opposed to an event that cannot apply."""
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        text = str(error.orig).lower()
        if any(word in text for word in ("locked", "busy", "disk i/o")):
            return True
        orig_module = type(error.orig).__module__
        return orig_module.startswith("psycopg") and isinstance(
            error, sa.exc.OperationalError | sa.exc.InterfaceError
        )
    return isinstance(error, sa.exc.TimeoutError)


def _event_failure(error: BaseException) -> bool:
    """The event failed to apply, not the database: worth another attempt."""
    return not is_transient(error)


class Applier:
    """The synchronous core: decodes a batch and applies it with its position."""

    def __init__(
        self,
        store: ReadStore,
        projection: Projection,
        key: GenerationKey,
        *,
        max_attempts: int = 3,
    ) -> None:
        self.store = store
        self.projection = projection
        self.key = key
        self.max_attempts = max(1, max_attempts)
        self._types = projection.handled_types()
        self._tables = store.tables_for(projection, key)

    def apply(self, messages: Sequence[LogMessage]) -> BatchResult:
        """Applies the messages after the stored position; raises GenerationRetired."""
        with self.store.write() as conn:
            row = conn.execute(
                sa.select(generations.c.state, generations.c.position)
                .where(
                    generations.c.name == self.key.name,
                    generations.c.version == self.key.version,
                    generations.c.generation == self.key.generation,
                )
                .with_for_update()
            ).first()
            if row is None or row.state == RETIRED:
                raise GenerationRetired(str(self.key))
            position = int(row.position)
            fresh = [m for m in messages if m.seq > position]
            if not fresh:
                return BatchResult(position, 0, 0)
            ctx = ApplyContext(conn, self._tables)
            events: list[tuple[LogMessage, Event]] = []
            parked: list[tuple[LogMessage, str]] = []
            for message in fresh:
                decoded = self._decode(message)
                if isinstance(decoded, Event):
                    events.append((message, decoded))
                elif decoded is not None:
                    parked.append((message, decoded))
            applied = self._apply_all(ctx, events, parked)
            for message, error in parked:
                conn.execute(
                    sa.insert(parked_events),
                    park_row(
                        self.key,
                        seq=message.seq,
                        headers=message.headers,
                        data=message.data,
                        error=error,
                        attempts=self.max_attempts,
                    ),
                )
            new_position = fresh[-1].seq
            conn.execute(
                generations.update()
                .where(
                    generations.c.name == self.key.name,
                    generations.c.version == self.key.version,
                    generations.c.generation == self.key.generation,
                )
                .values(
                    position=new_position,
                    events_applied=generations.c.events_applied + applied,
                    parked=generations.c.parked + len(parked),
                    updated_at=time.time(),
                )
            )
        return BatchResult(new_position, applied, len(parked))

    def _decode(self, message: LogMessage) -> Event | str | None:
        """The event, None for a type this projection does not handle, or an error."""
        event_type = message.headers.get("ce-type", "")
        if event_type and event_type not in self._types:
            return None
        try:
            envelope = Envelope.from_headers(message.headers)
            payload = decode_payload(envelope.event_type, message.data)
        except (EnvelopeError, DecodeError, ValueError) as error:
            return f"cannot decode: {type(error).__name__}: {error}"
        return Event(message.seq, envelope, payload)

    def _apply_all(
        self,
        ctx: ApplyContext,
        events: list[tuple[LogMessage, Event]],
        parked: list[tuple[LogMessage, str]],
    ) -> int:
        if not events:
            return 0
        try:
            with ctx.conn.begin_nested():
                self.projection.apply([event for _, event in events], ctx)
        except Exception as error:
            if is_transient(error):
                raise
            log.info(
                "%s: batch failed (%s); applying its events one by one", self.key, error
            )
        else:
            return len(events)
        applied = 0
        for message, event in events:
            error_text = self._apply_one(ctx, event)
            if error_text is None:
                applied += 1
            else:
                log.warning(
                    "%s: parked event %s: %s", self.key, message.seq, error_text
                )
                parked.append((message, error_text))
        parked.sort(key=lambda pair: pair[0].seq)
        return applied

    def _apply_one(self, ctx: ApplyContext, event: Event) -> str | None:
        """None once the event applied; the last error after `max_attempts` tries."""

        def attempt() -> None:
            with ctx.conn.begin_nested():
                self.projection.apply([event], ctx)

        try:
            retry.call(attempt, on=_event_failure, attempts=self.max_attempts)
        except Exception as error:
            if is_transient(error):
                raise
            return f"{type(error).__name__}: {error}"
        return None

    def retry_parked(self, parked: ParkedEvent) -> str | None:
        """Applies a parked event again (after a fix); None on success, else the error.

        Projections are keyed and order-independent, so an event applied late gives
        the rows it would have given in its place.
        """
        message = LogMessage(parked.seq, "", parked.headers, parked.data)
        now = time.time()
        with self.store.write() as conn:
            ctx = ApplyContext(conn, self._tables)
            decoded = self._decode(message)
            if decoded is None:
                error: str | None = None
            elif isinstance(decoded, str):
                error = decoded
            else:
                error = self._apply_one(ctx, decoded)
            where = sa.and_(
                parked_events.c.name == parked.key.name,
                parked_events.c.version == parked.key.version,
                parked_events.c.generation == parked.key.generation,
                parked_events.c.seq == parked.seq,
                parked_events.c.resolved_at.is_(None),
            )
            if error is None:
                resolved = conn.execute(
                    parked_events.update()
                    .where(where)
                    .values(resolved_at=now, retried_at=now)
                ).rowcount
                if resolved:
                    conn.execute(
                        generations.update()
                        .where(
                            generations.c.name == parked.key.name,
                            generations.c.version == parked.key.version,
                            generations.c.generation == parked.key.generation,
                        )
                        .values(
                            parked=generations.c.parked - 1,
                            events_applied=generations.c.events_applied + 1,
                            updated_at=now,
                        )
                    )
            else:
                conn.execute(
                    parked_events.update()
                    .where(where)
                    .values(
                        error=error[:4000],
                        attempts=parked_events.c.attempts + self.max_attempts,
                        retried_at=now,
                    )
                )
        return error


class Outcome(StrEnum):
    STOPPED = "stopped"
    ACTIVATED = "activated"
    RETIRED = "retired"
    LEASE_HELD = "lease_held"


ProgressCallback = Callable[[Progress], None]


class GenerationRunner:
    """Follows the log for one generation, holding its lease while it runs."""

    def __init__(
        self,
        store: ReadStore,
        projection: Projection,
        key: GenerationKey,
        nc: Client,
        *,
        owner: str,
        settings: RunnerSettings | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.store = store
        self.projection = projection
        self.key = key
        self.nc = nc
        self.owner = owner
        self.settings = settings or RunnerSettings()
        self.on_progress = on_progress
        self.applier = Applier(
            store, projection, key, max_attempts=self.settings.max_attempts
        )
        self.position = 0
        self.state = BUILDING
        self.head = 0

    async def run(
        self, *, stop: asyncio.Event | None = None, until_active: bool = False
    ) -> Outcome:
        """Runs until stopped, retired, or (with `until_active`) switched to active."""
        stop = stop or asyncio.Event()
        claimed = await asyncio.to_thread(self.store.claim, self.key, self.owner)
        if claimed is None:
            return Outcome.LEASE_HELD
        if claimed.state == RETIRED:
            return Outcome.RETIRED
        self.position, self.state = claimed.position, claimed.state
        if until_active and self.state == ACTIVE:
            await asyncio.to_thread(self.store.release, self.key, self.owner)
            return Outcome.ACTIVATED
        reader = LogReader(self.nc, batch_size=self.settings.batch_size)
        try:
            return await self._follow(reader, stop, until_active=until_active)
        finally:
            await reader.close()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.release, self.key, self.owner)

    def _wait(self) -> float:
        """How long a read may wait for the next event.

        A build asks for what is there and switches at the head; a live generation
        waits a little for the next event instead of asking again and again.
        """
        return 0.0 if self.state == BUILDING else self.settings.max_wait

    async def _open(self, reader: LogReader) -> None:
        await reader.open(self.position + 1)
        self.head = await reader.last_seq()
        if self.state == BUILDING:
            await asyncio.to_thread(self.store.set_build_target, self.key, self.head)

    async def _follow(  # noqa: C901, PLR0912 - one loop: read, apply, switch, beat
        self, reader: LogReader, stop: asyncio.Event, *, until_active: bool
    ) -> Outcome:
        opened = False
        ahead: asyncio.Future[Batch] | None = None
        last_beat = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    if not opened:
                        await self._open(reader)
                        opened = True
                    pending = ahead or asyncio.ensure_future(
                        reader.next_batch(self._wait())
                    )
                    ahead = None
                    batch = await _unless_stopped(pending, stop)
                    if batch is None:
                        break
                except _READ_ERRORS as error:
                    log.warning(
                        "%s: reading the log failed (%s); reopening", self.key, error
                    )
                    opened = False
                    await reader.close()
                    await _sleep_or_stop(stop, self.settings.retry_delay)
                    continue
                if batch.messages:
                    if not batch.at_head:
                        # The next batch is read while this one is applied.
                        ahead = asyncio.ensure_future(reader.next_batch(self._wait()))
                    try:
                        result = await self._apply(batch.messages, stop)
                    except GenerationRetired:
                        return Outcome.RETIRED
                    if result is None:
                        break
                    self.position = result.position
                    self.head = max(self.head, self.position)
                    self._report(result)
                if batch.at_head:
                    self.head = self.position
                    if self.state == BUILDING:
                        await asyncio.to_thread(self.store.activate, self.key)
                        self.state = ACTIVE
                        log.info(
                            "%s: caught up at %s; now active", self.key, self.position
                        )
                        self._report(BatchResult(self.position, 0, 0))
                    if until_active:
                        return Outcome.ACTIVATED
                if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                    last_beat = time.monotonic()
                    current = await asyncio.to_thread(
                        self.store.heartbeat, self.key, self.owner
                    )
                    if current is None or current.state == RETIRED:
                        return Outcome.RETIRED
                    self.head = max(self.head, await log_last_seq(self.nc))
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
        return Outcome.STOPPED

    async def _apply(
        self, messages: Sequence[LogMessage], stop: asyncio.Event
    ) -> BatchResult | None:
        """Applies a batch, retrying while the database is away; None if stopped."""

        async def database_away(error: BaseException) -> None:
            log.warning("%s: database unavailable (%s); retrying", self.key, error)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.record_error, self.key, str(error))

        try:
            return await retry.call_async(
                lambda: asyncio.to_thread(self.applier.apply, messages),
                on=is_transient,
                backoff=retry.Backoff(first=self.settings.retry_delay, cap=30.0),
                before_retry=database_away,
                stop=stop,
            )
        except retry.RetryStopped:
            return None

    def _report(self, result: BatchResult) -> None:
        if self.on_progress is None:
            return
        self.on_progress(
            Progress(
                key=self.key,
                state=self.state,
                position=result.position,
                head=max(self.head, result.position),
                applied=result.applied,
                parked=result.parked,
            )
        )


async def _unless_stopped(
    reading: asyncio.Future[Batch], stop: asyncio.Event
) -> Batch | None:
    """The read's result, or None as soon as `stop` is set (the read is dropped)."""
    stopping = asyncio.ensure_future(stop.wait())
    waiting: set[asyncio.Future[Any]] = {reading, stopping}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if reading.done():
        return reading.result()
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await reading
    return None


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleeps; True if `stop` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def build(
    store: ReadStore,
    projection: Projection,
    nc: Client,
    *,
    owner: str,
    created_by: str = "cli",
    settings: RunnerSettings | None = None,
    on_progress: ProgressCallback | None = None,
    stop: asyncio.Event | None = None,
    restart: bool = False,
) -> tuple[Generation, Outcome]:
    """Builds a new generation from position 0 (or resumes one) and switches to it.

    An unfinished build of the same version made by the same kind of caller is
    resumed from its position; `restart` discards it and starts from 0 instead.
    """
    pending = [
        g
        for g in await asyncio.to_thread(store.generations, projection.name)
        if g.state == BUILDING and g.version == projection.version
    ]
    mine = [g for g in pending if g.created_by == created_by]
    generation: Generation | None = mine[-1] if mine else None
    if generation is not None and restart:
        await asyncio.to_thread(_retire, store, generation.key)
        generation = None
    if generation is None:
        head = await log_last_seq(nc)
        generation = await asyncio.to_thread(
            lambda: store.create_generation(
                projection, created_by=created_by, build_target=head
            )
        )
    runner = GenerationRunner(
        store,
        projection,
        generation.key,
        nc,
        owner=owner,
        settings=settings,
        on_progress=on_progress,
    )
    outcome = await runner.run(stop=stop, until_active=True)
    final = await asyncio.to_thread(store.generation, generation.key)
    return (final or generation), outcome


def _retire(store: ReadStore, key: GenerationKey) -> None:
    with store.write() as conn:
        conn.execute(
            generations.update()
            .where(
                generations.c.name == key.name,
                generations.c.version == key.version,
                generations.c.generation == key.generation,
            )
            .values(state=RETIRED, retired_at=time.time(), owner="")
        )
