"""The projector's settings, from CLOSEDLOOP_* variables with documented defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from closedloop.config import DEFAULT_NATS_URL, ConfigError
from closedloop.readmodels import store_url

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class ProjectorConfig:
    """What the projector process reads at start-up.

    | variable | default |
    |---|---|
    | CLOSEDLOOP_DATA_DIR | ./var |
    | CLOSEDLOOP_NATS_URL | nats://127.0.0.1:14222 |
    | CLOSEDLOOP_PROJECTOR_STORE_URL | sqlite:///<data dir>/projector/read.db |
    | CLOSEDLOOP_PROJECTOR_BATCH_SIZE | 500 |
    | CLOSEDLOOP_PROJECTOR_MAX_ATTEMPTS | 3 (then the event is parked) |
    | CLOSEDLOOP_PROJECTOR_AUTO_BUILD | 1: build what has no generation yet |
    | CLOSEDLOOP_PROJECTOR_ONLY | empty: all installed; else a comma list |
    """

    data_dir: Path
    nats_url: str
    store_url: str
    batch_size: int = 500
    max_attempts: int = 3
    auto_build: bool = True
    only: tuple[str, ...] = ()
    poll_seconds: float = 1.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProjectorConfig:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("CLOSEDLOOP_DATA_DIR", "var")).resolve()
        return cls(
            data_dir=data_dir,
            nats_url=env.get("CLOSEDLOOP_NATS_URL", DEFAULT_NATS_URL),
            store_url=store_url(env),
            batch_size=_positive(env, "CLOSEDLOOP_PROJECTOR_BATCH_SIZE", 500),
            max_attempts=_positive(env, "CLOSEDLOOP_PROJECTOR_MAX_ATTEMPTS", 3),
            auto_build=_flag(env, "CLOSEDLOOP_PROJECTOR_AUTO_BUILD", default=True),
            only=tuple(
                name.strip()
                for name in env.get("CLOSEDLOOP_PROJECTOR_ONLY", "").split(",")
                if name.strip()
            ),
        )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
