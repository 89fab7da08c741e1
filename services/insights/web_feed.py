"""The change feed behind /api/events: where the projections stand, as it moves.

One poller per dashboard asks ListProjections every second while a page listens;
each listener's server-sent event stream says "changed" when a projection's
position moved (the page then reloads its panels) or "status" when only the lag or
the parked count did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from closedloop.insights.v1 import insights_service_pb2 as pb
from services.insights.web_json import projections_json

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from closedloop.insights.v1 import insights_service_pb2_grpc


@dataclass(frozen=True)
class Snapshot:
    """Where the projections stand; `moved` changes only when a position moved."""

    moved: tuple[tuple[Any, ...], ...]
    status: tuple[Any, ...]
    payload: dict[str, Any] = field(compare=False, hash=False)


def snapshot_of(reply: pb.ListProjectionsResponse) -> Snapshot:
    view = projections_json(reply)
    moved = tuple(
        (p["name"], p["generation"], p["state"], p["position"], p["events_applied"])
        for p in view["projections"]
    )
    status = (
        view["log_position"],
        tuple((p["name"], p["lag"], p["parked"]) for p in view["projections"]),
    )
    payload = {
        "log_position": view["log_position"],
        "positions": {p["name"]: p["position"] for p in view["projections"]},
        **view["summary"],
    }
    return Snapshot(moved, status, payload)


class ChangeFeed:
    """The latest snapshot, and a way to wait for the next one.

    Each listener remembers what it last sent and compares, so none misses a move
    however slowly it writes.
    """

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.listeners = 0
        self.closed = False
        self._updated = asyncio.Event()

    def update(self, snapshot: Snapshot) -> None:
        if snapshot != self.snapshot:
            self.snapshot = snapshot
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._updated.set()
        self._updated = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._updated.wait(), timeout)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream_handler(
    feed: ChangeFeed, keepalive_seconds: float
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The /api/events handler on `feed`; a comment after each quiet keep-alive."""

    async def events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: "changed" when a position moved, "status" otherwise."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        sent: Snapshot | None = None
        feed.listeners += 1
        try:
            while not feed.closed:
                current = feed.snapshot
                if current is not None and current is not sent:
                    if sent is None or current.moved != sent.moved:
                        await response.write(_sse("changed", current.payload))
                    elif current.status != sent.status:
                        await response.write(_sse("status", current.payload))
                    sent = current
                    continue
                await feed.wait(keepalive_seconds)
                if not feed.closed and feed.snapshot is sent:
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:
            pass  # the page went away
        finally:
            feed.listeners -= 1
        return response

    return events


async def poll(
    stub: insights_service_pb2_grpc.InsightsServiceStub,
    feed: ChangeFeed,
    interval: float,
) -> None:
    """Asks for the projections' positions while anyone listens."""
    while not feed.closed:
        if feed.listeners:
            try:
                reply = await stub.ListProjections(
                    pb.ListProjectionsRequest(), timeout=5
                )
            except grpc.aio.AioRpcError as error:
                # A status change, not a move: the page learns the service is away.
                moved = feed.snapshot.moved if feed.snapshot is not None else ()
                feed.update(
                    Snapshot(
                        moved,
                        ("unreachable", error.code().name),
                        {"error": error.code().name},
                    )
                )
            else:
                feed.update(snapshot_of(reply))
        await asyncio.sleep(interval)
