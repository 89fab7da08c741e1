"""Runs the projector: `python -m services.projector`."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from closedloop.projections import discover
from services.projector.app import start_projector, stop_projector
from services.projector.config import ProjectorConfig

log = logging.getLogger("services.projector")


async def main() -> None:
    config = ProjectorConfig.from_env()
    registry = discover()
    for name, error in sorted(registry.errors.items()):
        log.error("projection %s not loaded: %s", name, error)
    names = config.only or tuple(registry.names())
    projections = [registry.get(name)() for name in names]
    projector, task = await start_projector(config, projections)
    print(  # noqa: T201 - the line operators and scripts read
        f"closedloop projector running {', '.join(names) or 'no projections'}; "
        f"store {config.store_url}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, projector.stop.set)
    await projector.stop.wait()
    log.info("stopping the projector")
    await stop_projector(projector, task)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(main())
