"""The projector's settings, from CLOSEDLOOP_* variables with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from closedloop.config import CommaList
from closedloop.readmodels.common import ReadStoreEnv

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
        env = ProjectorEnv.from_env(environ)
        return cls(
            data_dir=env.data_dir,
            nats_url=env.nats_url,
            store_url=env.read_store_url(),
            batch_size=env.batch_size,
            max_attempts=env.max_attempts,
            auto_build=env.auto_build,
            only=env.only,
        )


class ProjectorEnv(ReadStoreEnv):
    model_config = SettingsConfigDict(env_prefix="CLOSEDLOOP_PROJECTOR_")

    batch_size: int = Field(default=500, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    auto_build: bool = True
    only: CommaList = ()
