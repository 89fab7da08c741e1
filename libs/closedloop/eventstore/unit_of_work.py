"""Group commit: concurrent commands share one transaction, conflicts fail alone.

Commands are plain functions of a `UnitOfWork`. One writer thread takes every command
that is waiting, runs them in turn against the same unit of work (two commands on one
aggregate see each other's events), and saves all their events with one
`Application.save(...)`: one transaction, one fsync. When that save hits an optimistic
concurrency conflict (another process wrote one of the aggregates), or a command broke
halfway through, the batch is replayed one command at a time, so a conflicting command
is retried or fails alone and the others still succeed.

The writer works on the aggregates in the repository's cache itself, not on copies,
and without asking the database for newer events first: it is the only writer of its
store. Whatever a failed batch touched is evicted, so a retry starts from the stored
events; a write by another process shows up as a conflict and is retried the same way.
Queries read through `reader(app)`, which never sees the writer's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    Repository,
    project_aggregate,
)
from eventsourcing.persistence import IntegrityError

from closedloop import retry
from closedloop.errors import ConcurrencyConflict, DomainError, Unavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from eventsourcing.domain import Aggregate

    from closedloop.eventstore.metadata import EventMeta

log = logging.getLogger(__name__)

R = TypeVar("R")
A = TypeVar("A", bound="Aggregate")


class UnitOfWork:
    """The aggregates that the commands of one transaction loaded or created."""

    def __init__(self, app: Application[Any]) -> None:
        self._app = app
        self._aggregates: dict[UUID, Aggregate] = {}

    def get(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """The aggregate as this transaction sees it, or None if it does not exist."""
        found = self._aggregates.get(aggregate_id)
        if found is None:
            try:
                found = self._app.repository.get(
                    aggregate_id, deepcopy_from_cache=False
                )
            except AggregateNotFoundError:
                return None
            self._aggregates[aggregate_id] = found
        if not isinstance(found, kind):
            return None
        return found

    def add(self, aggregate: Aggregate) -> None:
        self._aggregates[aggregate.id] = aggregate

    def mark(self) -> dict[UUID, int]:
        return {i: len(a.pending_events) for i, a in self._aggregates.items()}

    def changed_since(self, mark: dict[UUID, int]) -> bool:
        """True if events were triggered since `mark`; loading alone changes nothing."""
        return any(
            len(a.pending_events) != mark.get(i, 0) for i, a in self._aggregates.items()
        )

    def attach_meta_since(self, mark: dict[UUID, int], meta: EventMeta) -> None:
        for aggregate_id, aggregate in self._aggregates.items():
            for event in aggregate.pending_events[mark.get(aggregate_id, 0) :]:
                meta.attach(event)

    def evict(self) -> None:
        """Drops what this unit touched from the cache: it may hold unsaved changes."""
        cache = self._app.repository.cache
        if cache is None:
            return
        for aggregate_id in self._aggregates:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def save(self) -> int:
        """Saves every pending event in one transaction; returns its last id.

        That is the notification id of the last event saved, 0 if nothing was.
        """
        dirty = [a for a in self._aggregates.values() if a.pending_events]
        if not dirty:
            return 0
        recordings = self._app.save(*dirty)
        return max((r.notification.id for r in recordings), default=0)


@dataclass
class _Outcome(Generic[R]):
    result: R | None = None
    error: BaseException | None = None


@dataclass
class _Pending:
    command: Callable[[UnitOfWork], Any]
    meta: EventMeta
    future: asyncio.Future[Any]


class CommandExecutor:
    """Runs commands off the event loop, batching the concurrent ones into one save."""

    def __init__(
        self,
        app: Application[Any],
        *,
        max_batch: int = 512,
        conflict_retries: int = 3,
        on_saved: Callable[[int], None] | None = None,
    ) -> None:
        self._app = app
        self._max_batch = max_batch
        self._conflict_retries = conflict_retries
        self._on_saved = on_saved
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="commands",
            initializer=_mark_writer_thread,
        )
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0
        self.commands = 0

    async def execute(self, command: Callable[[UnitOfWork], R], meta: EventMeta) -> R:
        if self._closing:
            raise Unavailable("the service is shutting down; retry")
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="command-executor")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(command, meta, future))
        self._wake.set()
        return await future

    async def query(self, fn: Callable[[], R]) -> R:
        """Reads run in the default thread pool, beside the writer."""
        return await asyncio.to_thread(fn)

    async def close(self) -> None:
        """Refuses new commands, then answers every one already taken."""
        self._closing = True
        if self._worker is not None:
            self._wake.set()
            await self._worker
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = [
                    self._pending.popleft()
                    for _ in range(min(self._max_batch, len(self._pending)))
                ]
                items = [(p.command, p.meta) for p in batch]
                outcomes = await loop.run_in_executor(
                    self._thread, self.run_batch, items
                )
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.future.done():
                        continue  # the caller went away (deadline, cancellation)
                    if outcome.error is not None:
                        pending.future.set_exception(outcome.error)
                    else:
                        pending.future.set_result(outcome.result)
            if self._closing:
                return

    def run_batch(  # noqa: C901 - the whole group-commit decision in one place
        self, items: list[tuple[Callable[[UnitOfWork], Any], EventMeta]]
    ) -> list[_Outcome[Any]]:
        """Runs in the writer thread: all commands in one transaction if possible."""
        self.batches += 1
        self.commands += len(items)
        uow = UnitOfWork(self._app)
        outcomes: list[_Outcome[Any]] = []
        isolate = False
        for command, meta in items:
            mark = uow.mark()
            try:
                result = command(uow)
            except DomainError as error:
                if uow.changed_since(mark):
                    isolate = True  # it failed halfway: its events must not be saved
                    break
                outcomes.append(_Outcome(error=error))
                continue
            except Exception:
                log.exception("command failed unexpectedly; replaying batch alone")
                isolate = True
                break
            uow.attach_meta_since(mark, meta)
            outcomes.append(_Outcome(result=result))
        if not isolate:
            try:
                saved = uow.save()
            except IntegrityError:
                uow.evict()
                isolate = len(items) > 1
                if not isolate:
                    return [self._run_alone(*items[0], first_try_failed=True)]
            except Exception as error:  # noqa: BLE001 - the store is down: every caller hears it
                uow.evict()
                return [_Outcome(error=error) for _ in items]
            else:
                if saved and self._on_saved is not None:
                    self._on_saved(saved)
                return outcomes
        uow.evict()
        return [self._run_alone(command, meta) for command, meta in items]

    def _run_alone(
        self,
        command: Callable[[UnitOfWork], Any],
        meta: EventMeta,
        *,
        first_try_failed: bool = False,
    ) -> _Outcome[Any]:
        attempts = self._conflict_retries - (1 if first_try_failed else 0)
        try:
            # Someone else wrote first: reload and decide again, at once.
            return retry.call(
                lambda: self._attempt_alone(command, meta),
                on=IntegrityError,
                attempts=attempts,
            )
        except IntegrityError:
            return _Outcome(
                error=ConcurrencyConflict(
                    "another writer changed the same record; retry the request"
                )
            )

    def _attempt_alone(
        self, command: Callable[[UnitOfWork], Any], meta: EventMeta
    ) -> _Outcome[Any]:
        """One attempt in a transaction of its own; IntegrityError on a conflict."""
        uow = UnitOfWork(self._app)
        mark = uow.mark()
        try:
            result = command(uow)
            uow.attach_meta_since(mark, meta)
            saved = uow.save()
        except IntegrityError:
            uow.evict()
            raise
        except Exception as error:  # noqa: BLE001 - handed to the caller's future
            if not isinstance(error, DomainError) or uow.changed_since(mark):
                uow.evict()
            return _Outcome(error=error)
        if saved and self._on_saved is not None:
            self._on_saved(saved)
        return _Outcome(result=result)


_writer_thread = threading.local()


class SingleWriterRepository(Repository[UUID]):
    """The writer thread works on cached aggregates; other threads read stored ones.

    Only the command executor's thread changes aggregates, and it does so in place, so
    any other thread (queries, event handlers) must not see its cache: it rebuilds the
    aggregate from the stored events, which hold committed changes only.
    """

    def get(self, aggregate_id: UUID, **kwargs: Any) -> Any:
        if kwargs.get("version") is None and not getattr(
            _writer_thread, "active", False
        ):
            return self._reconstruct_aggregate(
                aggregate_id, None, kwargs.get("projector_func", project_aggregate)
            )
        kwargs["deepcopy_from_cache"] = False
        return super().get(aggregate_id, **kwargs)


class ServiceStore(Application[UUID]):
    """An event-sourced store with one writer: the command executor's thread."""

    #: How many aggregates the writer keeps in memory.
    cache_size = 10_000

    def construct_repository(self) -> Repository[UUID]:
        return SingleWriterRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=self.cache_size,
            fastforward=False,
            deepcopy_from_cache=False,
        )


def _mark_writer_thread() -> None:
    _writer_thread.active = True
