"""What the commands open: the projection registry, the read store, the log's NATS.

Commands run in an event loop that Ctrl-C or SIGTERM ends cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from apps.cli.output import errors, fail
from closedloop.config import redacted_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.client import Client

    from apps.cli.settings import Settings
    from closedloop.projections import Registry
    from closedloop.projections.store import ReadStore


def load_registry() -> Registry:
    from closedloop.projections import discover  # noqa: PLC0415

    registry = discover()
    for name, error in sorted(registry.errors.items()):
        errors.print(f"[yellow]warning:[/yellow] projection {name} not loaded: {error}")
    return registry


def open_store(settings: Settings) -> ReadStore:
    from closedloop.projections import ReadStore  # noqa: PLC0415

    return ReadStore(settings.store_url)


async def connect(settings: Settings) -> Client:
    from nats.aio.client import Client as Nats  # noqa: PLC0415

    nc = Nats()

    async def quiet(_: Exception) -> None:
        return None

    try:
        await nc.connect(
            settings.nats_url,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=quiet,
        )
    except Exception as error:
        # A failed connect leaves the client's tasks behind; close ends them.
        with contextlib.suppress(Exception):
            await nc.close()
        where = redacted_url(settings.nats_url)
        raise fail(f"cannot reach NATS at {where}: {error}") from error
    return nc


def run_command(coroutine: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Runs a command; Ctrl-C or SIGTERM sets `stop` so it can end cleanly."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await coroutine(stop)

    return asyncio.run(main())
