"""Runs the projector: `python -m services.projector`."""

from __future__ import annotations

import logging

from closedloop.config import redacted_url
from closedloop.process import Running, run_forever
from closedloop.projections import discover
from services.projector.app import start_projector, stop_projector
from services.projector.config import ProjectorConfig

log = logging.getLogger("services.projector")


async def start(config: ProjectorConfig) -> Running:
    registry = discover()
    for name, error in sorted(registry.errors.items()):
        log.error("projection %s not loaded: %s", name, error)
    names = config.only or tuple(registry.names())
    projections = [registry.get(name)() for name in names]
    projector, task = await start_projector(config, projections)
    return Running(
        name="the projector",
        banner=(
            f"closedloop projector running {', '.join(names) or 'no projections'}; "
            f"store {redacted_url(config.store_url)}"
        ),
        on_stop=lambda: stop_projector(projector, task),
    )


def main() -> None:
    config = ProjectorConfig.from_env()
    run_forever(lambda: start(config), collect_less=False)


if __name__ == "__main__":
    main()
