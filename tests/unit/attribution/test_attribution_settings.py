"""The attribution service's settings from CLOSEDLOOP_ATTRIBUTION_* variables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from closedloop.config import ConfigError
from services.attribution.models import ModelSpec
from services.attribution.rules import MODELS
from services.attribution.settings import AttributionSettings


def test_defaults() -> None:
    settings = AttributionSettings.from_env({})
    assert settings == AttributionSettings()
    assert settings.lookback == timedelta(days=90)
    assert settings.half_life == timedelta(days=7)
    assert settings.markov_order == 1
    assert settings.train_interval == 3600
    specs = settings.specs()
    assert list(specs) == list(MODELS)
    assert specs["time_decay"] == ModelSpec("time_decay")
    assert specs["markov"] == ModelSpec("markov")
    assert specs["shapley"] == ModelSpec("shapley")


def test_values_from_the_environment() -> None:
    settings = AttributionSettings.from_env(
        {
            "CLOSEDLOOP_ATTRIBUTION_LOOKBACK_DAYS": "30",
            "CLOSEDLOOP_ATTRIBUTION_HALF_LIFE_DAYS": "0.5",
            "CLOSEDLOOP_ATTRIBUTION_MARKOV_ORDER": "3",
            "CLOSEDLOOP_ATTRIBUTION_TRAIN_INTERVAL_SECONDS": "0",
        }
    )
    assert settings.lookback == timedelta(days=30)
    assert settings.half_life == timedelta(hours=12)
    assert settings.train_interval == 0
    assert settings.spec("markov").order == 3
    assert settings.spec("shapley").order == 3
    assert settings.spec("linear").lookback == timedelta(days=30)
    assert settings.spec("time_decay").key == (
        "time_decay(lookback=2592000s,half_life=43200s)"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLOSEDLOOP_ATTRIBUTION_MARKOV_ORDER", "4"),
        ("CLOSEDLOOP_ATTRIBUTION_MARKOV_ORDER", "0"),
        ("CLOSEDLOOP_ATTRIBUTION_MARKOV_ORDER", "one"),
        ("CLOSEDLOOP_ATTRIBUTION_MARKOV_ORDER", "1.5"),
        ("CLOSEDLOOP_ATTRIBUTION_LOOKBACK_DAYS", "-1"),
        ("CLOSEDLOOP_ATTRIBUTION_HALF_LIFE_DAYS", "0"),
        ("CLOSEDLOOP_ATTRIBUTION_HALF_LIFE_DAYS", "nan"),
        ("CLOSEDLOOP_ATTRIBUTION_TRAIN_INTERVAL_SECONDS", "-5"),
        ("CLOSEDLOOP_ATTRIBUTION_TRAIN_INTERVAL_SECONDS", "soon"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AttributionSettings.from_env({name: value})
