"""Reads whole streams back, for tests that compare a stream with a store."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.js import JetStreamContext
    from nats.js.api import RawStreamMsg


async def read_stream(js: JetStreamContext, stream: str) -> list[RawStreamMsg]:
    info = await js.stream_info(stream)
    if not info.state.messages:
        return []
    return [
        await js.get_msg(stream, seq=seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Polls until `check` returns a truthy value; fails with the last value."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    msg = f"condition not met within {timeout}s (last value: {value!r})"
    raise AssertionError(msg)
