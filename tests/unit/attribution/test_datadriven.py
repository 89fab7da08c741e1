"""Markov removal effects and Shapley values (DOMAIN.md 4.5 and 4.6)."""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from services.attribution import datadriven
from services.attribution.datadriven import (
    Journey,
    markov,
    shapley,
    shapley_subset,
)
from services.attribution.models import UNATTRIBUTED, Conversion, ModelSpec, Touch

# The fixture of DOMAIN.md 4.5: (path, conversions, value, non-conversions).
FIXTURE = [
    Journey(("paid_social", "organic_search", "paid_search", "direct"), 1, 1000, 0),
    Journey(("paid_social", "direct"), 0, 0, 2),
    Journey(("paid_search", "direct"), 1, 600, 1),
    Journey(("organic_search",), 0, 0, 1),
]
CHANNELS = ("direct", "organic_search", "paid_search", "paid_social")


def markov_spec(order: int) -> ModelSpec:
    return ModelSpec("markov", order=order)


# --- An independent reference: the chain built with dicts, solved in fractions ------


Counts = dict[object, dict[object, Fraction]]


def reference_chain(journeys: list[Journey], order: int) -> Counts:
    counts: Counts = defaultdict(lambda: defaultdict(Fraction))
    for path, conversions, _, nulls in journeys:
        previous: object = "start"
        for i in range(len(path)):
            state = tuple(path[max(0, i - order + 1) : i + 1])
            counts[previous][state] += Fraction(conversions + nulls)
            previous = state
        counts[previous]["conversion"] += Fraction(conversions)
        counts[previous]["null"] += Fraction(nulls)
    return counts


def reference_probability(counts: Counts, kept: frozenset[str]) -> Fraction:
    """P(start reaches conversion) with states holding a channel outside `kept` cut."""
    states = [s for s in counts if isinstance(s, tuple) and set(s) <= kept]
    index = {s: i for i, s in enumerate(states)}
    size = len(states)
    # Rows of [I - Q | r], solved by Gauss-Jordan elimination in exact fractions.
    rows = []
    for s in states:
        total = sum(counts[s].values(), Fraction(0))
        row = [Fraction(0)] * (size + 1)
        row[index[s]] += 1
        for target, n in counts[s].items():
            if n == 0:
                continue  # journeys that neither convert nor fail weigh nothing
            if target == "conversion":
                row[size] += n / total
            elif target in index:
                row[index[target]] -= n / total
        rows.append(row)
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(size):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [
                    a - factor * b for a, b in zip(rows[r], rows[col], strict=True)
                ]
    start = counts["start"]
    total = sum(start.values(), Fraction(0))
    return sum(
        (n / total * rows[index[s]][size] for s, n in start.items() if s in index),
        Fraction(0),
    )


def random_journeys(rng: random.Random, channels: str, count: int) -> list[Journey]:
    journeys = []
    for _ in range(count):
        path = tuple(rng.choice(channels) for _ in range(rng.randint(1, 5)))
        conversions = rng.choice([0, 0, 1, 2])
        journeys.append(
            Journey(path, conversions, 10.0 * conversions, rng.randint(0, 3))
        )
    return journeys


# --- Markov: the fixture ----------------------------------------------------------


def test_markov_fixture() -> None:
    model = markov(FIXTURE)
    assert model.channels == CHANNELS
    assert model.probability == pytest.approx(1 / 3, abs=1e-12)
    expected = {
        # channel: (P_-c, RE, share of 2 conversions, share of 1,600 value)
        "direct": (0.0, 1.0, 0.8696, 695.65),
        "paid_search": (0.1333, 0.6, 0.5217, 417.39),
        "paid_social": (0.1667, 0.5, 0.4348, 347.83),
        "organic_search": (0.2667, 0.2, 0.1739, 139.13),
    }
    for channel, (removed, effect, conversions, value) in expected.items():
        assert round(model.removal_probability[channel], 4) == removed
        assert model.removal_effect[channel] == pytest.approx(effect, abs=1e-12)
        assert round(model.conversions[channel], 4) == conversions
        assert round(model.value[channel], 2) == value
    assert sum(model.conversions.values()) == pytest.approx(2)
    assert sum(model.value.values()) == pytest.approx(1600)
    assert model.spec == markov_spec(1)


def test_markov_is_deterministic_and_order_free() -> None:
    shuffled = list(reversed(FIXTURE))
    assert markov(shuffled) == markov(FIXTURE)
    # Identical paths may come as separate rows or added together.
    split = [
        Journey(("paid_search", "direct"), 1, 600, 0),
        Journey(("paid_search", "direct"), 0, 0, 1),
    ]
    merged = [j for j in FIXTURE if j.path != ("paid_search", "direct")] + split
    assert markov(merged).removal_effect == pytest.approx(
        markov(FIXTURE).removal_effect
    )


# --- Markov: higher orders, by hand -----------------------------------------------


def test_markov_order_2_fixture_by_hand() -> None:
    # (paid_search, direct) is reached by both converting paths: 2 of 3 convert;
    # paid_social's second state decides: (paid_social, direct) always fails.
    # P = 1/2 * 1/3 * 2/3 + 1/3 * 2/3 = 1/3; without paid_social 2/9; without
    # organic_search 2/9; paid_search and direct are on every converting path.
    model = markov(FIXTURE, markov_spec(2))
    assert model.probability == pytest.approx(1 / 3)
    assert model.removal_probability == pytest.approx(
        {
            "direct": 0,
            "organic_search": 2 / 9,
            "paid_search": 0,
            "paid_social": 2 / 9,
        }
    )
    assert model.removal_effect == pytest.approx(
        {"direct": 1, "organic_search": 1 / 3, "paid_search": 1, "paid_social": 1 / 3}
    )


def test_markov_order_3_fixture_by_hand() -> None:
    # (paid_social, organic_search, paid_search) -> (organic_search, paid_search,
    # direct) always converts; (paid_search, direct) converts half the time.
    # P = 1/2 * 1/3 + 1/3 * 1/2 = 1/3; without paid_social or organic_search 1/6.
    model = markov(FIXTURE, markov_spec(3))
    assert model.removal_probability == pytest.approx(
        {
            "direct": 0,
            "organic_search": 1 / 6,
            "paid_search": 0,
            "paid_social": 1 / 6,
        }
    )
    assert model.removal_effect == pytest.approx(
        {"direct": 1, "organic_search": 1 / 2, "paid_search": 1, "paid_social": 1 / 2}
    )
    assert model.conversions == pytest.approx(
        {
            "direct": 2 / 3,
            "organic_search": 1 / 3,
            "paid_search": 2 / 3,
            "paid_social": 1 / 3,
        }
    )


def test_higher_orders_remember_where_a_journey_came_from() -> None:
    # a > b converts, c > b does not: order 1 cannot tell a from c, order 2 can.
    journeys = [Journey(("a", "b"), 1, 100, 0), Journey(("c", "b"), 0, 0, 1)]
    assert markov(journeys).removal_effect == pytest.approx(
        {"a": 0.5, "b": 1, "c": 0.5}
    )
    assert markov(journeys, markov_spec(2)).removal_effect == pytest.approx(
        {"a": 1, "b": 1, "c": 0}
    )
    # x > a > b converts, y > a > b does not: only order 3 sees x and y apart.
    longer = [Journey(("x", "a", "b"), 1, 100, 0), Journey(("y", "a", "b"), 0, 0, 1)]
    assert markov(longer, markov_spec(2)).removal_effect == pytest.approx(
        {"a": 1, "b": 1, "x": 0.5, "y": 0.5}
    )
    assert markov(longer, markov_spec(3)).removal_effect == pytest.approx(
        {"a": 1, "b": 1, "x": 1, "y": 0}
    )


@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_matches_exact_fractions(order: int) -> None:
    rng = random.Random(order)
    for _ in range(15):
        journeys = random_journeys(rng, "abcde", rng.randint(1, 12))
        if not any(j.conversions for j in journeys):
            continue
        model = markov(journeys, markov_spec(order))
        counts = reference_chain(journeys, order)
        everything = frozenset(model.channels)
        p = reference_probability(counts, everything)
        assert model.probability == pytest.approx(float(p), rel=1e-9, abs=1e-12)
        for channel in model.channels:
            removed = reference_probability(counts, everything - {channel})
            assert model.removal_probability[channel] == pytest.approx(
                float(removed), rel=1e-9, abs=1e-12
            )
            assert model.removal_effect[channel] == pytest.approx(
                float(1 - removed / p), rel=1e-9, abs=1e-12
            )


def test_sparse_solver_agrees_with_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    journeys = random_journeys(random.Random(5), "abcdef", 300)
    dense = {o: markov(journeys, markov_spec(o)) for o in (1, 2, 3)}
    dense_shapley = shapley(journeys, ModelSpec("shapley", order=2))
    monkeypatch.setattr(datadriven, "_DENSE_STATES", 0)
    for order, model in dense.items():
        sparse = markov(journeys, markov_spec(order))
        assert sparse.probability == pytest.approx(model.probability, rel=1e-10)
        assert sparse.removal_effect == pytest.approx(model.removal_effect, rel=1e-10)
    sparse_shapley = shapley(journeys, ModelSpec("shapley", order=2))
    assert sparse_shapley.phi == pytest.approx(dense_shapley.phi, rel=1e-10)


def test_markov_without_conversions_has_no_effects() -> None:
    model = markov([Journey(("a",), 0, 0, 3), Journey(("a", "b"), 0, 0, 1)])
    assert model.probability == 0
    assert model.removal_effect == {"a": 0, "b": 0}
    assert model.conversions == {"a": 0, "b": 0}


def test_markov_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="no journeys"):
        markov([])
    with pytest.raises(ValueError, match="unattributed"):
        markov([Journey((), 1, 10, 0)])
    with pytest.raises(ValueError, match="negative"):
        markov([Journey(("a",), -1, 0, 0)])
    with pytest.raises(ValueError, match="markov ModelSpec"):
        markov(FIXTURE, ModelSpec("linear"))
    with pytest.raises(ValueError, match="too many channels"):
        markov([Journey(tuple(f"c{i}" for i in range(3000)), 1, 1, 0)], markov_spec(6))


def test_markov_accepts_plain_tuples_and_lists() -> None:
    plain = [(list(j.path), j.conversions, j.value, j.nulls) for j in FIXTURE]
    assert markov(plain).removal_effect == markov(FIXTURE).removal_effect


# --- Crediting one deal with a trained model --------------------------------------


def day(n: int) -> datetime:
    return datetime(2026, 5, 1, tzinfo=UTC) + timedelta(days=n)


def test_markov_credits_a_deal_by_removal_effect() -> None:
    model = markov(FIXTURE)
    touches = [
        Touch("t1", "paid_social", None, day(1), 0),
        Touch("t2", "paid_search", "brand", day(2), 0),
        Touch("t3", "direct", None, day(3), 0),
        Touch("t4", "direct", None, day(4), 0),
    ]
    won = Conversion(10_000, "USD", day(5), day(2), day(3), day(5))
    result = model.credit(touches, won)
    # RE 0.5, 0.6 and 1.0 of 2.1; direct's 1.0 split over its two touches.
    assert [c.amount_minor for c in result.credits] == [2381, 2857, 2381, 2381]
    assert result.fallback is None
    assert result.model == markov_spec(1)
    churn = model.credit(touches, won, amount_minor=-10_000)
    assert [c.amount_minor for c in churn.credits] == [-2381, -2857, -2381, -2381]


def test_markov_falls_back_to_linear_when_no_channel_weighs() -> None:
    # b never helps a conversion: removing it loses nothing.
    model = markov([Journey(("a",), 1, 10, 0), Journey(("b",), 0, 0, 1)])
    assert model.removal_effect == {"a": 1, "b": 0}
    touches = [
        Touch("t1", "b", None, day(1), 0),
        Touch("t2", "unknown", None, day(2), 0),
    ]
    lead = Conversion(101, "EUR", day(3), day(3))
    result = model.credit(touches, lead)
    assert result.fallback == "linear"
    assert [c.amount_minor for c in result.credits] == [51, 50]
    with_a = model.credit([*touches, Touch("t3", "a", None, day(2), 1)], lead)
    assert with_a.fallback is None
    assert [c.amount_minor for c in with_a.credits] == [0, 0, 101]
    nothing = model.credit([], lead)
    assert [(c.channel, c.amount_minor) for c in nothing.credits] == [
        (UNATTRIBUTED, 101)
    ]


# --- Shapley ----------------------------------------------------------------------


def test_shapley_fixture() -> None:
    result = shapley(FIXTURE)
    expected = {
        "direct": (0.9167, 733.33),
        "paid_search": (0.5167, 413.33),
        "paid_social": (0.4500, 360.00),
        "organic_search": (0.1167, 93.33),
    }
    for channel, (conversions, value) in expected.items():
        assert round(result.conversions[channel], 4) == conversions
        assert round(result.value[channel], 2) == value
    assert sum(result.phi.values()) == pytest.approx(1 / 3)
    assert result.standard_error is None
    assert result.spec == ModelSpec("shapley")


def reference_shapley(journeys: list[Journey], order: int) -> dict[str, Fraction]:
    counts = reference_chain(journeys, order)
    channels = sorted({c for j in journeys for c in j.path})
    worth: dict[frozenset[str], Fraction] = {}

    def v(coalition: frozenset[str]) -> Fraction:
        if coalition not in worth:
            worth[coalition] = reference_probability(counts, coalition)
        return worth[coalition]

    phi = dict.fromkeys(channels, Fraction(0))
    orders = list(itertools.permutations(channels))
    for arrival in orders:
        for i, channel in enumerate(arrival):
            before = frozenset(arrival[:i])
            phi[channel] += v(before | {channel}) - v(before)
    return {c: phi[c] / len(orders) for c in channels}


@pytest.mark.parametrize("order", [1, 2])
def test_shapley_matches_permutation_enumeration(order: int) -> None:
    rng = random.Random(11 + order)
    for _ in range(5):
        journeys = random_journeys(rng, "abcde", 10)
        if not any(j.conversions for j in journeys):
            continue
        result = shapley(journeys, ModelSpec("shapley", order=order))
        expected = reference_shapley(journeys, order)
        assert result.phi == pytest.approx(
            {c: float(v) for c, v in expected.items()}, abs=1e-12
        )
        total = sum(j.conversions for j in journeys)
        assert sum(result.conversions.values()) == pytest.approx(total)


def test_shapley_samples_permutations_beyond_the_exact_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exact = shapley(FIXTURE)
    monkeypatch.setattr(datadriven, "MAX_EXACT_SHAPLEY_CHANNELS", 3)
    spec = ModelSpec("shapley", samples=4000, seed=7)
    sampled = shapley(FIXTURE, spec)
    assert sampled.standard_error is not None
    for channel in CHANNELS:
        error = sampled.standard_error[channel]
        assert 0 < error < 0.05
        assert (
            abs(sampled.conversions[channel] - exact.conversions[channel]) < 5 * error
        )
    # Every sampled order telescopes to v(all) - v(none): the total is exact.
    assert sum(sampled.conversions.values()) == pytest.approx(2)
    assert shapley(FIXTURE, spec) == sampled
    assert shapley(FIXTURE, ModelSpec("shapley", samples=4000, seed=8)) != sampled
    with pytest.raises(ValueError, match="2 samples"):
        shapley(FIXTURE, ModelSpec("shapley", samples=1))


def test_shapley_with_twenty_channels_is_sampled() -> None:
    # Independent one-channel journeys make v additive: every order gives the same
    # marginal contributions, so the estimate is exact and its error zero.
    journeys = [Journey((f"c{i:02d}",), i % 3, 5.0 * (i % 3), 1) for i in range(20)]
    result = shapley(journeys)
    assert result.standard_error is not None
    assert max(result.standard_error.values()) < 1e-9
    total = sum(j.conversions for j in journeys)
    for i in range(20):
        assert result.conversions[f"c{i:02d}"] == pytest.approx(i % 3, abs=1e-9)
    assert sum(result.conversions.values()) == pytest.approx(total)


def test_shapley_credits_a_deal_by_phi() -> None:
    result = shapley(FIXTURE)
    touches = [
        Touch("t1", "organic_search", None, day(1), 0),
        Touch("t2", "direct", None, day(2), 0),
    ]
    lead = Conversion(1000, "USD", day(3), day(3))
    credited = result.credit(touches, lead)
    # phi: organic_search 7/360, direct 11/72 (= 55/360): 7:55 of 10.00.
    assert [c.amount_minor for c in credited.credits] == [113, 887]
    assert credited.model == ModelSpec("shapley")


def test_shapley_subset_fixture() -> None:
    result = shapley_subset(FIXTURE)
    assert result.conversions == pytest.approx(
        {
            "direct": 0.75,
            "paid_search": 0.75,
            "paid_social": 0.25,
            "organic_search": 0.25,
        }
    )
    # Each converting journey's value splits evenly over its distinct channels.
    assert result.value == pytest.approx(
        {"direct": 550, "paid_search": 550, "paid_social": 250, "organic_search": 250}
    )
    assert result.standard_error is None
    assert result.spec == ModelSpec("shapley_subset")


def test_shapley_subset_counts_a_repeated_channel_once() -> None:
    result = shapley_subset([Journey(("a", "a", "a", "b"), 2, 40, 5)])
    assert result.conversions == {"a": 1, "b": 1}
    assert result.value == {"a": 20, "b": 20}


def test_shapley_subset_is_the_shapley_value_of_its_game() -> None:
    journeys = random_journeys(random.Random(3), "abcd", 12)
    channels = sorted({c for j in journeys for c in j.path})

    def v(coalition: frozenset[str]) -> Fraction:
        return sum(
            (Fraction(j.conversions) for j in journeys if set(j.path) <= coalition),
            Fraction(0),
        )

    phi = dict.fromkeys(channels, Fraction(0))
    orders = list(itertools.permutations(channels))
    for arrival in orders:
        for i, channel in enumerate(arrival):
            before = frozenset(arrival[:i])
            phi[channel] += v(before | {channel}) - v(before)
    expected = {c: float(phi[c] / math.factorial(len(channels))) for c in channels}
    assert shapley_subset(journeys).conversions == pytest.approx(expected)


def test_data_driven_specs_are_checked() -> None:
    with pytest.raises(ValueError, match="shapley ModelSpec"):
        shapley(FIXTURE, ModelSpec("markov"))
    with pytest.raises(ValueError, match="shapley_subset ModelSpec"):
        shapley_subset(FIXTURE, ModelSpec("shapley"))
