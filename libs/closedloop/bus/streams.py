"""JetStream streams: one per context, and the log that sources them all."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats.js.errors
from nats.js.api import StorageType, StreamConfig, StreamSource

log = logging.getLogger(__name__)

#: Every bounded context that publishes events, in the order of the log's sources.
CONTEXTS = ("lead", "deal", "consent", "attribution")
LOG_STREAM = "CLOSEDLOOP_LOG"


def context_stream(context: str) -> str:
    return f"CLOSEDLOOP_{context.upper()}"


def context_subjects(context: str) -> str:
    return f"closedloop.{context}.v1.>"


@dataclass(frozen=True)
class StreamSettings:
    replicas: int = 1
    duplicate_window_seconds: float = 600.0


def stream_configs(
    settings: StreamSettings,
    contexts: tuple[str, ...] = CONTEXTS,
    *,
    include_log: bool = True,
) -> list[StreamConfig]:
    """File storage, no age limit, a duplicate window; the log only sources."""
    common = {
        "storage": StorageType.FILE,
        "max_age": 0,
        "num_replicas": settings.replicas,
        "duplicate_window": settings.duplicate_window_seconds,
        "allow_direct": True,
    }
    configs = [
        StreamConfig(
            name=context_stream(context),
            description=f"Events of the {context} context",
            subjects=[context_subjects(context)],
            **common,  # type: ignore[arg-type]
        )
        for context in contexts
    ]
    if not include_log:
        return configs
    configs.append(
        StreamConfig(
            name=LOG_STREAM,
            description="The event log: every context stream, in one replayable order",
            sources=[StreamSource(name=context_stream(c)) for c in CONTEXTS],
            **common,  # type: ignore[arg-type]
        )
    )
    return configs


async def provision_streams(
    js: nats.js.JetStreamContext,
    settings: StreamSettings | None = None,
    contexts: tuple[str, ...] = CONTEXTS,
    *,
    include_log: bool = True,
) -> list[str]:
    """Creates or updates the streams; safe to run at each start-up."""
    settings = settings or StreamSettings()
    names = []
    for config in stream_configs(settings, contexts, include_log=include_log):
        assert config.name is not None  # noqa: S101
        try:
            await js.stream_info(config.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", config.name)
        else:
            await js.update_stream(config)
        names.append(config.name)
    return names
