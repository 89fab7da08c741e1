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
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from closedloop.config import ConfigError
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
        env = os.environ if environ is None else environ
        return cls(
            lookback=timedelta(
                days=_number(env, "LOOKBACK_DAYS", DEFAULT_LOOKBACK.days)
            ),
            half_life=timedelta(
                days=_number(env, "HALF_LIFE_DAYS", DEFAULT_HALF_LIFE.days)
            ),
            markov_order=int(_number(env, "MARKOV_ORDER", 1, integer=True)),
            train_interval=_number(
                env, "TRAIN_INTERVAL_SECONDS", DEFAULT_TRAIN_INTERVAL
            ),
        )


def _number(
    env: Mapping[str, str], key: str, default: float, *, integer: bool = False
) -> float:
    name = PREFIX + key
    raw = env.get(name, "").strip()
    if not raw:
        return float(default)
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    return float(value)
