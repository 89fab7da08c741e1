"""Reading the outbox: stored events turned into ready-to-send messages.

Decoding a stored event, mapping it to its protobuf message and building its
CloudEvents headers costs about as much CPU as publishing it. Under one GIL that work
competes with the relay's publishing and with the service's own commands, so a
service's relay has it done in a worker process (`WorkerOutbox`): the relay's process
only publishes what comes back. `ThreadOutbox` does the same in a thread of the
relay's process, for stores that only exist in that process and for tests that look
inside the reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import uuid
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

from closedloop.bus.cloudevents import binary_mode_headers
from closedloop.eventstore.metadata import EventMeta
from closedloop.eventstore.personal import PersonalDataMapper

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from eventsourcing.application import Application
    from eventsourcing.persistence import ApplicationRecorder, Mapper
    from google.protobuf.message import Message

log = logging.getLogger(__name__)

#: One stored event as the relay sends it: (notification id, NATS subject, payload,
#: headers). The subject is "" for a service's own bookkeeping, which is not published
#: but still moves the relay's position.
WireEvent = tuple[int, str, bytes, dict[str, str]]

#: The module a worker process runs (`python -m`), with its end of the pipe.
WORKER_MODULE = "closedloop.relay.outbox_worker"

EVENT_ID_NAMESPACE = uuid.UUID("6d0b3c4e-3f5a-4c41-9d52-2f6f0e5b7a10")
_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


#: The RFC 4122 variant bits over a hex digit: 10xx.
_VARIANT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}


def event_id(originator_id: uuid.UUID | str, originator_version: int) -> str:
    """The identity of a stored event, stable across retries and republishing.

    `uuid.uuid5(EVENT_ID_NAMESPACE, f"{originator_id}:{originator_version}")`, spelled
    out on the hex digest without building UUID objects: the relay does this for
    every event it publishes.
    """
    h = hashlib.sha1(
        _NAMESPACE_BYTES + f"{originator_id}:{originator_version}".encode(),
        usedforsecurity=False,
    ).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def wire_headers(
    domain_event: Any, event_type: str, position: int, source: str
) -> dict[str, str]:
    """The CloudEvents headers of a stored event (see closedloop.bus.cloudevents)."""
    subject = str(domain_event.originator_id)
    version = domain_event.originator_version
    meta = EventMeta.fields_of(domain_event) or {}
    return binary_mode_headers(
        event_id=event_id(subject, version),
        event_type=event_type,
        source=source,
        subject=subject,
        time=domain_event.timestamp,
        sequence=version,
        correlation_id=str(meta.get("correlation_id", "")),
        causation_id=str(meta.get("causation_id", "")),
        traceparent=str(meta.get("traceparent", "")),
        position=position,
    )


class OutboxReader:
    """Reads notifications from a store and maps each to its wire form."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        to_message: Callable[[Any], Message | None],
        source: str,
    ) -> None:
        self.recorder = recorder
        self._mapper = mapper
        self._to_message = to_message
        self._source = source

    def read(self, start: int, limit: int, stop: int | None = None) -> list[WireEvent]:
        """Notifications from id `start` on (at most `limit`, none past `stop`)."""
        notifications = self.recorder.select_notifications(start, limit, stop)
        return [self.wire_event(n) for n in notifications]

    def wire_event(self, notification: Any) -> WireEvent:
        domain_event = self._mapper.to_domain_event(notification)
        message = self._to_message(domain_event)
        if message is None:
            return (notification.id, "", b"", {})
        event_type = message.DESCRIPTOR.full_name  # also the NATS subject
        return (
            notification.id,
            event_type,
            message.SerializeToString(),
            wire_headers(domain_event, event_type, notification.id, self._source),
        )


@dataclass(frozen=True)
class OutboxRecipe:
    """How a worker process opens the same store and maps its events the same way.

    Everything in it is pickled by reference (classes and functions by import path),
    so a spawned process can rebuild the reader from it.
    """

    store_class: type[Application[Any]]
    env: Mapping[str, str]
    to_message: Callable[[Any], Message | None]
    source: str

    def open(self) -> tuple[Application[Any], OutboxReader]:
        store = self.store_class(env=dict(self.env))
        return store, self.reader_of(store)

    def outbox(self, where: str, store: Application[Any]) -> Outbox:
        """A worker process (`"process"`) or a thread reading `store` (`"thread"`)."""
        if where == "process":
            return WorkerOutbox(self)
        return ThreadOutbox(self.reader_of(store))

    def reader_of(self, store: Application[Any]) -> OutboxReader:
        """A reader of an open store, leaving personal fields encrypted."""
        mapper = store.mapper
        if isinstance(mapper, PersonalDataMapper):
            mapper = mapper.for_wire()  # personal fields stay encrypted on the stream
        return OutboxReader(
            store.recorder,  # type: ignore[arg-type]
            mapper,
            self.to_message,
            self.source,
        )


class Outbox(Protocol):
    """Where a relay gets its next messages from."""

    async def open(self) -> None: ...

    def read(
        self, start: int, limit: int, stop: int | None = None
    ) -> asyncio.Future[list[WireEvent]]:
        """Starts reading at once, so the relay can read ahead while it publishes."""
        ...

    async def close(self) -> None: ...


class ThreadOutbox:
    """Reads and maps in a thread of the relay's own process."""

    def __init__(self, reader: OutboxReader) -> None:
        self.reader = reader

    async def open(self) -> None:
        return None

    def read(
        self, start: int, limit: int, stop: int | None = None
    ) -> asyncio.Future[list[WireEvent]]:
        return asyncio.get_running_loop().run_in_executor(
            None, self.reader.read, start, limit, stop
        )

    async def close(self) -> None:
        return None


class WorkerOutbox:
    """Reads and maps in a worker process: the relay's process only publishes.

    The worker is spawned (never forked: the service runs gRPC and asyncio threads)
    on the first read, and spawned again after it died; reads lost with it fail with
    `OutboxUnavailableError`, which the relay retries like a NATS outage. Requests
    and answers go over one pipe that the event loop watches: no thread of the
    relay's process waits on the worker, and none competes for its GIL.
    """

    def __init__(self, recipe: OutboxRecipe) -> None:
        self._recipe = recipe
        self._worker: _Worker | None = None

    async def open(self) -> None:
        """Starts the worker and waits until it has opened the store."""
        await self.read(1, 0)

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while it runs."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive else None

    def read(
        self, start: int, limit: int, stop: int | None = None
    ) -> asyncio.Future[list[WireEvent]]:
        loop = asyncio.get_running_loop()
        if self._worker is None or not self._worker.alive:
            self._worker = _Worker(self._recipe, loop)
        return self._worker.ask((start, limit, stop))

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.stop()


class _Worker:
    """One worker process and the answers still owed by it, in the order asked."""

    def __init__(self, recipe: OutboxRecipe, loop: asyncio.AbstractEventLoop) -> None:
        # A fresh interpreter running closedloop.relay.outbox_worker, not
        # multiprocessing: nothing of the service's own main module runs again there,
        # and no helper process comes along.
        ours, theirs = socket.socketpair()
        # It imports what this process can import, wherever that came from.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        with theirs:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", WORKER_MODULE, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self._conn = Connection(ours.detach())
        self._conn.send(recipe)
        self._loop = loop
        self._owed: deque[asyncio.Future[list[WireEvent]]] = deque()
        self.alive = True
        self.pid = self._process.pid
        loop.add_reader(self._conn.fileno(), self._answered)

    def ask(
        self, request: tuple[int, int, int | None]
    ) -> asyncio.Future[list[WireEvent]]:
        future: asyncio.Future[list[WireEvent]] = self._loop.create_future()
        if not self.alive:
            future.set_exception(OutboxUnavailableError("outbox worker stopped"))
            return future
        try:
            self._conn.send(request)
        except (OSError, ValueError) as error:
            self._lost(error)
            future.set_exception(
                OutboxUnavailableError(f"outbox worker stopped: {error}")
            )
            return future
        self._owed.append(future)
        return future

    def _answered(self) -> None:
        try:
            ok, value = self._conn.recv()
        except (EOFError, OSError) as error:
            self._lost(error)
            return
        future = self._owed.popleft()
        if future.done():
            return  # the relay gave up on this read
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _lost(self, error: BaseException) -> None:
        if not self.alive:
            return
        self.alive = False
        log.warning("outbox worker stopped (%s); starting another", error or "exit")
        self._loop.remove_reader(self._conn.fileno())
        self._conn.close()
        if self._process.poll() is None:
            self._process.kill()
        while self._owed:
            future = self._owed.popleft()
            if not future.done():
                future.set_exception(OutboxUnavailableError("outbox worker stopped"))

    async def stop(self) -> None:
        if self.alive:
            self.alive = False
            self._loop.remove_reader(self._conn.fileno())
            with contextlib.suppress(OSError, ValueError):
                self._conn.send(None)  # finish the current read, then exit
            self._conn.close()
            for future in self._owed:
                future.cancel()
        try:
            await asyncio.to_thread(self._process.wait, 5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            await asyncio.to_thread(self._process.wait)


class OutboxUnavailableError(ConnectionError):
    """The outbox could not be read just now; the relay tries again."""


def serve(fd: int) -> None:
    """The worker process: answers each read in turn until told to stop.

    The first message on the connection is the recipe; then come the reads.
    """
    # Ctrl-C reaches the whole process group: the service stops its worker itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    conn = Connection(fd)
    try:
        recipe: OutboxRecipe = conn.recv()
        store, reader = recipe.open()
    except Exception:
        log.exception("outbox worker cannot open the store")
        return
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the relay's process is gone
            if request is None:
                return
            try:
                answer: tuple[bool, Any] = (True, reader.read(*request))
            except Exception as error:  # noqa: BLE001 - the relay decides what it means
                answer = (False, error)
            try:
                conn.send(answer)
            except (pickle.PicklingError, TypeError, AttributeError):
                conn.send((False, OutboxUnavailableError(repr(answer[1]))))
            except BrokenPipeError:
                return  # the relay stopped while this read was under way
    finally:
        store.close()
