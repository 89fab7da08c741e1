"""The attribution service's own settings: model parameters and the training schedule.

| variable | default |
|---|---|
| CLOSEDLOOP_ATTRIBUTION_LOOKBACK_DAYS | 90 (how far before lead creation) |
| CLOSEDLOOP_ATTRIBUTION_HALF_LIFE_DAYS | 7 (time_decay) |
| CLOSEDLOOP_ATTRIBUTION_MARKOV_ORDER | 1 (markov and shapley; 1 to 3) |
| CLOSEDLOOP_ATTRIBUTION_TRAIN_INTERVAL_SECONDS | 3600 (0: only on request) |
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from closedloop.config import ConfigError, EnvSettings
from services.attribution.models import DEFAULT_HALF_LIFE, DEFAULT_LOOKBACK, ModelSpec
from services.attribution.rules import MODELS

if TYPE_CHECKING:
    from collections.abc import Mapping

PREFIX = "CLOSEDLOOP_ATTRIBUTION_"
MAX_MARKOV_ORDER = 3
DEFAULT_TRAIN_INTERVAL = 3600.0


@dataclass(frozen=True)
class AttributionSettings:
    """Model parameters are part of each model's identity (its `model_key`)."""

    lookback: timedelta = DEFAULT_LOOKBACK
    half_life: timedelta = DEFAULT_HALF_LIFE
    markov_order: int = 1
    #: Seconds between scheduled trainings; 0 trains only on request.
    train_interval: float = DEFAULT_TRAIN_INTERVAL

    def __post_init__(self) -> None:
        if not 1 <= self.markov_order <= MAX_MARKOV_ORDER:
            raise ConfigError(
                f"{PREFIX}MARKOV_ORDER must be 1 to {MAX_MARKOV_ORDER}, "
                f"got {self.markov_order}"
            )
        if self.lookback < timedelta(0):
            raise ConfigError(f"{PREFIX}LOOKBACK_DAYS must not be negative")
        if self.half_life <= timedelta(0):
            raise ConfigError(f"{PREFIX}HALF_LIFE_DAYS must be positive")
        if self.train_interval < 0 or not math.isfinite(self.train_interval):
            raise ConfigError(f"{PREFIX}TRAIN_INTERVAL_SECONDS must be 0 or more")

    def spec(self, model: str) -> ModelSpec:
        """The model with this service's parameters."""
        if model == "time_decay":
            return ModelSpec(model, lookback=self.lookback, half_life=self.half_life)
        if model in {"markov", "shapley"}:
            return ModelSpec(model, lookback=self.lookback, order=self.markov_order)
        return ModelSpec(model, lookback=self.lookback)

    def specs(self) -> dict[str, ModelSpec]:
        return {model: self.spec(model) for model in MODELS}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AttributionSettings:
        env = AttributionEnv.from_env(environ)
        return cls(
            lookback=timedelta(days=env.lookback_days),
            half_life=timedelta(days=env.half_life_days),
            markov_order=env.markov_order,
            train_interval=env.train_interval_seconds,
        )


class AttributionEnv(EnvSettings):
    """The variables as they are written: days and seconds, finite numbers."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)

    lookback_days: float = Field(default=DEFAULT_LOOKBACK.days, allow_inf_nan=False)
    half_life_days: float = Field(default=DEFAULT_HALF_LIFE.days, allow_inf_nan=False)
    markov_order: int = 1
    train_interval_seconds: float = Field(
        default=DEFAULT_TRAIN_INTERVAL, allow_inf_nan=False
    )
