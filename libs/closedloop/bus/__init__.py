"""The NATS side: connections, stream provisioning and the CloudEvents envelope."""

from __future__ import annotations

import logging
from typing import Any

import nats
from nats.aio.client import Client

log = logging.getLogger(__name__)


async def connect(url: str, *, name: str, **options: Any) -> Client:
    """A connection that keeps reconnecting forever: NATS may be away for a while."""
    client: list[Client] = []

    async def disconnected() -> None:
        if client and (client[0].is_closed or client[0].is_draining):
            return  # we closed it ourselves
        log.warning("%s: disconnected from NATS", name)

    async def reconnected() -> None:
        log.info("%s: reconnected to NATS", name)

    async def error(exc: Exception) -> None:
        log.debug("%s: NATS error: %s", name, exc)

    defaults: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
        "allow_reconnect": True,
    }
    defaults.update(options)
    nc = await nats.connect(url, **defaults)
    client.append(nc)
    return nc
