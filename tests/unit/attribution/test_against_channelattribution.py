"""Our models against the channelattribution package on the same journeys.

channelattribution is GPL-3.0: a test dependency only, never imported by services.
Its markov_model simulates, so removal-effect shares are compared within 0.02
(absolute); its heuristic models are compared exactly (first and last touch) or
within the per-conversion rounding of our minor units (linear). Its value columns
use removal effects computed from value-weighted paths, while DOMAIN.md 4.5 splits
value by the conversion removal effects, so only conversion shares are compared.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.attribution.crediting import credit
from services.attribution.datadriven import Journey, markov
from services.attribution.models import Conversion, ModelSpec, Touch

ca = pytest.importorskip(
    "ChannelAttribution",
    reason="channelattribution (GPL-3.0 test dependency) is not installed",
)
pd = pytest.importorskip("pandas", reason="channelattribution needs pandas")

SHARE_TOLERANCE = 0.02


def generated_journeys(
    count: int, channels: int, seed: int, lift_step: float = 0.03
) -> list[Journey]:
    """Random paths; each distinct channel on a path raises its conversion odds.

    Channel i adds i * lift_step, so removal effects grow with the channel number:
    a structure both implementations must find.
    """
    rng = random.Random(seed)
    names = [f"ch{i}" for i in range(channels)]
    journeys = []
    for _ in range(count):
        path = tuple(rng.choice(names) for _ in range(rng.randint(1, 6)))
        odds = 0.02 + sum(lift_step * int(c[2:]) for c in set(path))
        converted = rng.random() < min(odds, 0.95)
        value = float(rng.randint(1, 500) * 100) if converted else 0.0
        journeys.append(Journey(path, int(converted), value, int(not converted)))
    return journeys


def frame(journeys: list[Journey]) -> object:
    return pd.DataFrame(
        {
            "path": [" > ".join(j.path) for j in journeys],
            "total_conversions": [j.conversions for j in journeys],
            "total_conversion_value": [j.value for j in journeys],
            "total_null": [j.nulls for j in journeys],
        }
    )


def their_markov(journeys: list[Journey], order: int = 1) -> dict[str, float]:
    """channelattribution's removal-effect shares (column names vary by order)."""
    result = ca.markov_model(
        frame(journeys),
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        var_null="total_null",
        order=order,
        out_more=True,
        flg_pro=False,
        verbose=False,
    )
    effects = result["removal_effects"]
    column = effects.columns[1]  # removal_effects_conversion, or removal_effect
    total = effects[column].sum()
    return {
        name: float(effect) / total
        for name, effect in zip(effects["channel_name"], effects[column], strict=True)
    }


# A known first-order chain: start, each channel's next steps, conversion, null.
TRUE_START = {"display": 0.2, "paid_social": 0.25, "paid_search": 0.3, "email": 0.1}
TRUE_STEPS: dict[str, dict[str, float]] = {
    "display": {"paid_social": 0.2, "email": 0.1, "null": 0.7},
    "paid_social": {"email": 0.3, "direct": 0.2, "null": 0.5},
    "paid_search": {"direct": 0.3, "conversion": 0.15, "null": 0.55},
    "email": {"direct": 0.4, "paid_search": 0.2, "null": 0.4},
    "direct": {"conversion": 0.35, "email": 0.15, "null": 0.5},
}


def simulated_journeys(count: int, seed: int) -> list[Journey]:
    rng = random.Random(seed)
    journeys = []
    for _ in range(count):
        path = [rng.choices(list(TRUE_START), weights=list(TRUE_START.values()))[0]]
        while True:
            steps = TRUE_STEPS[path[-1]]
            step = rng.choices(list(steps), weights=list(steps.values()))[0]
            if step in {"conversion", "null"}:
                break
            path.append(step)
        converted = step == "conversion"
        journeys.append(
            Journey(tuple(path), int(converted), 100.0 * converted, int(not converted))
        )
    return journeys


def true_shares() -> dict[str, float]:
    """Removal-effect shares of the known chain, solved directly."""
    channels = sorted(TRUE_STEPS)

    def probability(kept: list[str]) -> float:
        q = np.array([[TRUE_STEPS[a].get(b, 0.0) for b in kept] for a in kept])
        r = np.array([TRUE_STEPS[a].get("conversion", 0.0) for a in kept])
        x = np.linalg.solve(np.eye(len(kept)) - q, r)
        return float(np.array([TRUE_START.get(a, 0.0) for a in kept]) @ x)

    p = probability(channels)
    effects = {
        c: 1 - probability([k for k in channels if k != c]) / p for c in channels
    }
    total = sum(effects.values())
    return {c: e / total for c, e in effects.items()}


def test_markov_shares_match_channelattribution_and_the_known_chain() -> None:
    journeys = simulated_journeys(20_000, seed=1)
    ours = markov(journeys)
    total = sum(ours.removal_effect.values())
    our_shares = {c: e / total for c, e in ours.removal_effect.items()}
    theirs = their_markov(journeys)
    truth = true_shares()
    assert set(theirs) == set(our_shares) == set(truth)
    for channel, share in our_shares.items():
        assert share == pytest.approx(theirs[channel], abs=SHARE_TOLERANCE), channel
        assert share == pytest.approx(truth[channel], abs=SHARE_TOLERANCE), channel


@pytest.mark.parametrize("order", [2, 3])
def test_higher_order_shares_match_channelattribution(order: int) -> None:
    # channelattribution starts a path at its first k channels where we grow the
    # state from one channel; both give the same absorption probabilities.
    journeys = generated_journeys(20_000, 6, seed=order)
    ours = markov(journeys, ModelSpec("markov", order=order))
    total = sum(ours.removal_effect.values())
    theirs = their_markov(journeys, order)
    for channel, effect in ours.removal_effect.items():
        assert effect / total == pytest.approx(theirs[channel], abs=SHARE_TOLERANCE)


def test_markov_fixture_matches_channelattribution() -> None:
    fixture = [
        Journey(("paid_social", "organic_search", "paid_search", "direct"), 1, 1000, 0),
        Journey(("paid_social", "direct"), 0, 0, 2),
        Journey(("paid_search", "direct"), 1, 600, 1),
        Journey(("organic_search",), 0, 0, 1),
    ]
    ours = markov(fixture)
    total = sum(ours.removal_effect.values())
    theirs = their_markov(fixture)
    for channel, effect in ours.removal_effect.items():
        assert effect / total == pytest.approx(theirs[channel], abs=SHARE_TOLERANCE)


def test_heuristic_models_match_channelattribution() -> None:
    journeys = [j for j in generated_journeys(3_000, 8, seed=3) if j.conversions]
    theirs = ca.heuristic_models(
        frame(journeys),
        "path",
        "total_conversions",
        var_value="total_conversion_value",
        flg_pro=False,
    ).set_index("channel_name")
    ours: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    conversions_with: dict[str, int] = defaultdict(int)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number, journey in enumerate(journeys):
        touches = [
            Touch(f"{number}-{i}", channel, None, start + timedelta(hours=i), i)
            for i, channel in enumerate(journey.path)
        ]
        end = start + timedelta(hours=len(touches))
        conversion = Conversion(int(journey.value), "USD", end, end)
        for model in ("first_touch", "last_touch", "linear"):
            for row in credit(model, touches, conversion).credits:
                ours[model][row.channel] += row.amount_minor
        for channel in set(journey.path):
            conversions_with[channel] += 1
    for channel in theirs.index:
        assert ours["first_touch"][channel] == theirs.loc[channel, "first_touch_value"]
        assert ours["last_touch"][channel] == theirs.loc[channel, "last_touch_value"]
        # Each conversion rounds a channel's linear credit by less than one unit.
        difference = abs(
            ours["linear"][channel] - theirs.loc[channel, "linear_touch_value"]
        )
        assert difference < conversions_with[channel]
    total = sum(int(j.value) for j in journeys)
    assert sum(ours["linear"].values()) == total
    assert theirs["linear_touch_value"].sum() == pytest.approx(total)
