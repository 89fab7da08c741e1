"""A service's stop cancels its background tasks and never waits on them forever."""

from __future__ import annotations

import asyncio
import time

from closedloop.service import cancel_all


async def test_cancelled_tasks_are_awaited() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def failed() -> None:
        raise RuntimeError("failed before the stop")

    tasks = [asyncio.create_task(forever()), asyncio.create_task(failed())]
    await asyncio.sleep(0)
    assert await cancel_all(tasks, grace=5.0) == []
    assert all(task.done() for task in tasks)


async def test_a_task_that_ignores_its_cancellation_does_not_hang_the_stop() -> None:
    """As a task does whose asyncio.wait_for swallowed the cancellation."""
    ignored = asyncio.Event()

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if ignored.is_set():
                    raise
                ignored.set()

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    began = time.monotonic()
    assert await cancel_all([task], grace=0.2) == ["stubborn"]
    assert time.monotonic() - began < 5.0
    task.cancel()  # the second cancellation it does honour
    await asyncio.wait([task])
    assert task.cancelled()
