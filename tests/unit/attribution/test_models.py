"""Journeys, milestones, heuristic models and rounding (DOMAIN.md 4.1 to 4.4)."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

from services.attribution.crediting import (
    HEURISTIC_MODELS,
    counted_touches,
    credit,
    credit_by_channel,
    largest_remainder,
    milestones,
    weights,
)
from services.attribution.models import (
    DEFAULT_LOOKBACK,
    UNATTRIBUTED,
    Conversion,
    Credit,
    Milestone,
    ModelSpec,
    Touch,
)

DAY = timedelta(days=1)


def at(day: float, month: int = 3) -> datetime:
    """Noon UTC on a day of 2026 (fractions of a day allowed)."""
    return datetime(2026, month, 1, 12, tzinfo=UTC) + (day - 1) * DAY


def touch(
    tid: str, channel: str, when: datetime, order: int = 0, campaign: str | None = None
) -> Touch:
    return Touch(tid, channel, campaign, when, order)


def amounts(result_credits: tuple[Credit, ...]) -> list[int]:
    return [c.amount_minor for c in result_credits]


# --- The worked example of DOMAIN.md 4.4 ------------------------------------------

# T3 is the last touch before lead creation (LC); T4 the last before the opportunity
# was opened (OC) and before the win (CW).
EXAMPLE_TOUCHES = (
    touch("T1", "paid_social", at(1), 1),
    touch("T2", "organic_search", at(9), 2),
    touch("T3", "paid_search", at(20), 3),
    touch("T4", "direct", at(27), 4),
)
EXAMPLE_WIN = Conversion(
    amount_minor=100_000,
    currency="USD",
    converted_at=at(31),
    lead_created_at=at(22),
    opportunity_created_at=at(29),
    won_at=at(31),
)
EXAMPLE_TABLE = {
    "first_touch": ["1000.00", "0", "0", "0"],
    "last_touch": ["0", "0", "0", "1000.00"],
    "last_non_direct": ["0", "0", "1000.00", "0"],
    "linear": ["250.00", "250.00", "250.00", "250.00"],
    "time_decay": ["43.68", "96.44", "286.63", "573.25"],
    "position_based": ["400.00", "100.00", "100.00", "400.00"],
    "w_shaped": ["300.00", "100.00", "300.00", "300.00"],
    "full_path": ["225.00", "100.00", "225.00", "450.00"],
}


@pytest.mark.parametrize("model", sorted(EXAMPLE_TABLE))
def test_worked_example_to_the_cent(model: str) -> None:
    result = credit(model, EXAMPLE_TOUCHES, EXAMPLE_WIN)
    expected = [int(Decimal(v) * 100) for v in EXAMPLE_TABLE[model]]
    assert amounts(result.credits) == expected
    assert [c.touchpoint_id for c in result.credits] == ["T1", "T2", "T3", "T4"]
    assert result.model == ModelSpec(model)
    assert result.currency == "USD"


def test_worked_example_covers_every_heuristic_model() -> None:
    assert set(EXAMPLE_TABLE) == set(HEURISTIC_MODELS)


def test_worked_example_milestones() -> None:
    journey = counted_touches(EXAMPLE_TOUCHES, EXAMPLE_WIN)
    assert milestones(journey, EXAMPLE_WIN) == {
        Milestone.FIRST_TOUCH: 0,
        Milestone.LEAD_CREATED: 2,
        Milestone.OPPORTUNITY_CREATED: 3,
        Milestone.CLOSED_WON: 3,
    }


def test_credits_carry_the_touch() -> None:
    t = touch("T9", "email", at(5), 7, campaign="spring")
    conversion = dataclasses.replace(EXAMPLE_WIN, amount_minor=1234)
    (row,) = credit("linear", [t], conversion).credits
    assert row == Credit("T9", "email", "spring", at(5), 1234)


# --- Which touches count (4.1) ----------------------------------------------------


def test_lookback_is_counted_from_lead_creation_inclusive() -> None:
    lead = at(1, month=6)
    conversion = Conversion(500, "EUR", lead + 30 * DAY, lead)
    edge = lead - DEFAULT_LOOKBACK
    touches = [
        touch("too-early", "email", edge - timedelta(microseconds=1)),
        touch("edge", "email", edge),
        touch("inside", "email", lead),
    ]
    assert [t.touchpoint_id for t in counted_touches(touches, conversion)] == [
        "edge",
        "inside",
    ]
    short = ModelSpec("linear", lookback=timedelta(days=10))
    result = credit(short, touches, conversion)
    assert [c.touchpoint_id for c in result.credits] == ["inside"]
    assert amounts(result.credits) == [500]


def test_later_touches_never_count() -> None:
    conversion = Conversion(1000, "USD", at(10), at(5))
    touches = [
        touch("before", "email", at(4)),
        touch("at", "referral", at(10)),
        touch("after", "direct", at(10) + timedelta(microseconds=1)),
    ]
    result = credit("last_touch", touches, conversion)
    assert [(c.touchpoint_id, c.amount_minor) for c in result.credits] == [
        ("before", 0),
        ("at", 1000),
    ]


def test_journey_order_does_not_depend_on_input_order() -> None:
    touches = list(EXAMPLE_TOUCHES)
    for seed in range(5):
        random.Random(seed).shuffle(touches)
        for model in HEURISTIC_MODELS:
            assert credit(model, touches, EXAMPLE_WIN) == credit(
                model, EXAMPLE_TOUCHES, EXAMPLE_WIN
            )


def test_equal_times_are_ordered_by_recording_order_then_id() -> None:
    same = at(3)
    touches = [
        touch("b", "email", same, 2),
        touch("z", "paid_search", same, 1),
        touch("a", "display", same, 2),
    ]
    conversion = Conversion(100, "USD", at(4), at(4))
    journey = counted_touches(touches, conversion)
    assert [t.touchpoint_id for t in journey] == ["z", "a", "b"]
    assert amounts(credit("first_touch", touches, conversion).credits) == [100, 0, 0]
    assert amounts(credit("last_touch", touches, conversion).credits) == [0, 0, 100]


def test_no_counted_touch_is_unattributed() -> None:
    conversion = Conversion(-700, "JPY", at(10), at(10))
    for touches in ([], [touch("late", "email", at(11))]):
        for model in HEURISTIC_MODELS:
            result = credit(model, touches, conversion)
            assert result.credits == (Credit(None, UNATTRIBUTED, None, None, -700),)


def test_times_must_be_aware() -> None:
    with pytest.raises(ValueError, match="occurred_at"):
        Touch("t", "email", None, datetime(2026, 3, 1), 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match="won_at"):
        Conversion(1, "USD", at(2), at(1), None, datetime(2026, 3, 1))  # noqa: DTZ001


def test_other_time_zones_are_compared_as_instants() -> None:
    plus_two = timezone(timedelta(hours=2))
    conversion = Conversion(100, "USD", at(10), at(10))
    # 13:00 at +02:00 is 11:00 UTC, before the 12:00 UTC conversion.
    early = touch("early", "email", datetime(2026, 3, 10, 13, tzinfo=plus_two))
    assert counted_touches([early], conversion) == [early]


# --- Milestones (4.2) -------------------------------------------------------------


def test_milestones_on_one_touch_add_up() -> None:
    # T1 is first touch and the last touch before lead creation; T2 is OC.
    touches = [touch("T1", "paid_social", at(1)), touch("T2", "direct", at(3))]
    conversion = Conversion(90_000, "USD", at(4), at(2), at(3))
    shares = weights(
        ModelSpec("w_shaped"), counted_touches(touches, conversion), conversion
    )
    # 60% and 30%, and with no other touch the 10% follows the same proportion.
    assert shares == [Fraction(2, 3), Fraction(1, 3)]
    assert amounts(credit("w_shaped", touches, conversion).credits) == [60_000, 30_000]


def test_one_touch_gets_everything_under_every_model() -> None:
    conversion = Conversion(12_345, "USD", at(5), at(3), at(4), at(5))
    for model in HEURISTIC_MODELS:
        result = credit(model, [touch("only", "direct", at(2))], conversion)
        assert amounts(result.credits) == [12_345]


def test_missing_lead_creation_milestone_goes_to_the_present_ones() -> None:
    # The lead was captured with no touch before it: LC has no touch.
    touches = [
        touch("T1", "email", at(2)),
        touch("T2", "paid_search", at(3)),
        touch("T3", "display", at(4)),
        touch("T4", "direct", at(5)),
    ]
    conversion = Conversion(100_000, "USD", at(6), at(1), at(3.5), at(6))
    journey = counted_touches(touches, conversion)
    assert milestones(journey, conversion)[Milestone.LEAD_CREATED] is None
    # W-shaped: FT (T1) and OC (T2) take LC's 30% half each; T3, T4 share 10%.
    assert amounts(credit("w_shaped", touches, conversion).credits) == [
        45_000,
        45_000,
        5_000,
        5_000,
    ]
    # Full path: FT, OC (T2) and CW (T4) take LC's 22.5% a third each; T3 gets 10%.
    assert amounts(credit("full_path", touches, conversion).credits) == [
        30_000,
        30_000,
        10_000,
        30_000,
    ]


def test_lead_created_conversion_has_no_opportunity_milestone() -> None:
    touches = [
        touch("T1", "paid_social", at(1)),
        touch("T2", "email", at(2)),
        touch("T3", "organic_search", at(3)),
    ]
    lead = Conversion(1000, "USD", at(3), at(3))
    # OC's 30% goes to FT and LC in proportion: 45% each; T2 keeps its 10%.
    assert amounts(credit("w_shaped", touches, lead).credits) == [450, 100, 450]
    # Full path: OC and CW missing; FT and LC get 45% each.
    assert amounts(credit("full_path", touches, lead).credits) == [450, 100, 450]


def test_pipeline_conversion_has_no_closed_won_milestone() -> None:
    touches = [
        touch("T1", "paid_social", at(1)),
        touch("T2", "email", at(2)),
        touch("T3", "organic_search", at(3)),
        touch("T4", "events", at(5)),
    ]
    opened = Conversion(80_000, "USD", at(6), at(4), at(6))
    # FT T1, LC T3, OC T4 take CW's share a third each: 30% each, T2 10%.
    assert amounts(credit("full_path", touches, opened).credits) == [
        24_000,
        8_000,
        24_000,
        24_000,
    ]


def test_touches_after_opportunity_creation_share_the_rest() -> None:
    touches = [
        touch("T1", "paid_social", at(1)),
        touch("T2", "paid_search", at(2)),
        touch("T3", "email", at(3)),
        touch("T4", "events", at(4)),
        touch("T5", "direct", at(5)),
    ]
    won = Conversion(10_000, "USD", at(6), at(1.5), at(2.5), at(6))
    # FT T1, LC T1, OC T2; T3, T4, T5 (after OC) share 10%.
    assert amounts(credit("w_shaped", touches, won).credits) == [
        6000,
        3000,
        334,
        333,
        333,
    ]
    # Full path: CW is T5 (22.5%); T3 and T4 share 10%.
    assert amounts(credit("full_path", touches, won).credits) == [
        4500,
        2250,
        500,
        500,
        2250,
    ]


def test_custom_milestone_weights() -> None:
    # Marketo Measure's U-shaped: 50/50 first touch and lead creation, none between.
    u_shaped = ModelSpec(
        "w_shaped",
        milestone_weights=(
            (Milestone.FIRST_TOUCH, Fraction(1, 2)),
            (Milestone.LEAD_CREATED, Fraction(1, 2)),
        ),
    )
    result = credit(u_shaped, EXAMPLE_TOUCHES, EXAMPLE_WIN)
    assert amounts(result.credits) == [50_000, 0, 50_000, 0]


# --- The other models' edges (4.3) ------------------------------------------------


def test_last_non_direct_when_all_are_direct() -> None:
    touches = [touch("a", "direct", at(1)), touch("b", "direct", at(2))]
    conversion = Conversion(100, "USD", at(3), at(3))
    assert amounts(credit("last_non_direct", touches, conversion).credits) == [0, 100]


def test_position_based_two_touches_and_custom_weights() -> None:
    two = [touch("a", "email", at(1)), touch("b", "display", at(2))]
    conversion = Conversion(1001, "USD", at(3), at(3))
    assert amounts(credit("position_based", two, conversion).credits) == [501, 500]
    ga_30_40 = ModelSpec(
        "position_based", position_weights=(Fraction(3, 10), Fraction(2, 5))
    )
    # Two touches split first:last as 3:4.
    assert amounts(credit(ga_30_40, two, conversion).credits) == [429, 572]
    three = [*two, touch("c", "direct", at(2.5))]
    assert amounts(credit(ga_30_40, three, conversion).credits) == [300, 300, 401]


def test_time_decay_half_life_parameter() -> None:
    conversion = Conversion(300, "USD", at(15), at(15))
    touches = [touch("old", "email", at(1)), touch("new", "email", at(15))]
    # 14 days: two half-lives of 7 days, one half-life of 14 days.
    assert amounts(credit("time_decay", touches, conversion).credits) == [60, 240]
    two_weeks = ModelSpec("time_decay", half_life=timedelta(days=14))
    assert amounts(credit(two_weeks, touches, conversion).credits) == [100, 200]
    assert two_weeks != ModelSpec("time_decay")


def test_time_decay_uses_exact_seconds() -> None:
    conversion = Conversion(10**12, "USD", at(10), at(10))
    # 3.5 days before: exactly half a half-life, not 3 or 4 whole days.
    touches = [touch("mid", "email", at(6.5)), touch("now", "email", at(10))]
    shares = weights(ModelSpec("time_decay"), touches, conversion)
    with localcontext() as context:
        context.prec = 60
        half = Decimal(2) ** Decimal("-0.5")
        expected = half / (1 + half)
        got = Decimal(shares[0].numerator) / shares[0].denominator
        assert abs(got - expected) < Decimal(10) ** -45
    assert sum(shares) == 1
    assert amounts(credit("time_decay", touches, conversion).credits) == [
        414_213_562_373,
        585_786_437_627,
    ]


# --- Exact money (4.4) ------------------------------------------------------------


def test_largest_remainder_ties_go_to_the_earlier_index() -> None:
    third = [Fraction(1, 3)] * 3
    assert largest_remainder(100, third) == [34, 33, 33]
    assert largest_remainder(101, third) == [34, 34, 33]
    assert largest_remainder(-100, third) == [-34, -33, -33]
    assert largest_remainder(0, third) == [0, 0, 0]
    assert largest_remainder(7, [Fraction(1), Fraction(0)]) == [7, 0]
    # Largest remainders first: 0.9 and 0.8 beat the earlier 0.3.
    shares = [Fraction(1, 10), Fraction(3, 10), Fraction(3, 5)]
    assert largest_remainder(3, shares) == [0, 1, 2]
    # Shares need not sum to 1: they are proportions.
    assert largest_remainder(10, [Fraction(1), Fraction(3)]) == [3, 7]


def test_largest_remainder_refuses_bad_shares() -> None:
    with pytest.raises(ValueError, match="no shares"):
        largest_remainder(1, [])
    with pytest.raises(ValueError, match="negative"):
        largest_remainder(1, [Fraction(2), Fraction(-1)])
    with pytest.raises(ValueError, match="zero"):
        largest_remainder(1, [Fraction(0)])


def test_tied_touches_rounding_is_deterministic() -> None:
    same = at(2)
    touches = [touch(tid, "email", same, 5) for tid in ("c", "a", "b")]
    conversion = Conversion(200, "USD", at(3), at(3))
    for _ in range(3):
        result = credit("linear", reversed(touches), conversion)
        assert [(c.touchpoint_id, c.amount_minor) for c in result.credits] == [
            ("a", 67),
            ("b", 67),
            ("c", 66),
        ]


def test_negative_amounts_mirror_positive_ones() -> None:
    for model in HEURISTIC_MODELS:
        for amount in (1, 999, 100_001):
            up = credit(model, EXAMPLE_TOUCHES, EXAMPLE_WIN, amount_minor=amount)
            down = credit(model, EXAMPLE_TOUCHES, EXAMPLE_WIN, amount_minor=-amount)
            assert amounts(down.credits) == [-a for a in amounts(up.credits)]


def test_revenue_after_the_win_uses_the_journey_at_the_win() -> None:
    renewal_touch = touch("T5", "email", at(15, month=4))
    touches = [*EXAMPLE_TOUCHES, renewal_touch]
    churn = credit("w_shaped", touches, EXAMPLE_WIN, amount_minor=-20_000)
    assert [c.touchpoint_id for c in churn.credits] == ["T1", "T2", "T3", "T4"]
    assert amounts(churn.credits) == [-6000, -2000, -6000, -6000]


def _random_case(rng: random.Random) -> tuple[list[Touch], Conversion]:
    lead = at(rng.uniform(0, 200), month=1)
    opened = lead + rng.uniform(0, 40) * DAY if rng.random() < 0.7 else None
    won = opened + rng.uniform(0, 40) * DAY if opened and rng.random() < 0.7 else None
    converted_at = won or opened or lead
    amount = rng.choice(
        [0, 1, -1, rng.randint(-(10**6), 10**6), rng.randint(0, 10**15), 99]
    )
    conversion = Conversion(amount, "USD", converted_at, lead, opened, won)
    touches = []
    for i in range(rng.randint(0, 12)):
        when = converted_at - rng.uniform(-5, 130) * DAY
        if rng.random() < 0.2:
            when = when.replace(hour=0, minute=0, second=0, microsecond=0)
        channel = rng.choice(["direct", "email", "paid_search", "display"])
        touches.append(touch(f"t{i:02d}", channel, when, rng.randint(0, 3)))
    return touches, conversion


SPECS = [
    *(ModelSpec(name) for name in HEURISTIC_MODELS),
    ModelSpec("time_decay", half_life=timedelta(hours=5)),
    ModelSpec("time_decay", half_life=timedelta(days=30), lookback=timedelta(days=9)),
    ModelSpec("position_based", position_weights=(Fraction(1, 7), Fraction(3, 5))),
    ModelSpec("full_path", lookback=timedelta(days=400)),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_credits_always_sum_to_the_amount(spec: ModelSpec) -> None:
    rng = random.Random(20260331)
    for _ in range(300):
        touches, conversion = _random_case(rng)
        result = credit(spec, touches, conversion)
        total = sum(c.amount_minor for c in result.credits)
        assert total == conversion.amount_minor
        journey = counted_touches(touches, conversion, spec.lookback)
        if not journey:
            assert [c.channel for c in result.credits] == [UNATTRIBUTED]
            continue
        assert [c.touchpoint_id for c in result.credits] == [
            t.touchpoint_id for t in journey
        ]
        shares = weights(spec, journey, conversion)
        assert sum(shares) == 1
        assert all(s >= 0 for s in shares)
        size = abs(conversion.amount_minor)
        sign = -1 if conversion.amount_minor < 0 else 1
        for share, row in zip(shares, result.credits, strict=True):
            exact = size * share
            assert sign * row.amount_minor in (math.floor(exact), math.ceil(exact))


# --- Model identity ---------------------------------------------------------------


def test_model_spec_fills_defaults_and_refuses_foreign_parameters() -> None:
    assert ModelSpec("time_decay") == ModelSpec(
        "time_decay", half_life=timedelta(days=7), lookback=timedelta(days=90)
    )
    assert ModelSpec("position_based").position_weights == (
        Fraction(2, 5),
        Fraction(2, 5),
    )
    assert ModelSpec("markov").order == 1
    with pytest.raises(ValueError, match="linear takes no half_life"):
        ModelSpec("linear", half_life=DAY)
    with pytest.raises(ValueError, match="unknown attribution model"):
        ModelSpec("u_shaped")
    with pytest.raises(ValueError, match="half_life"):
        ModelSpec("time_decay", half_life=timedelta(0))
    with pytest.raises(ValueError, match="lookback"):
        ModelSpec("linear", lookback=-DAY)
    with pytest.raises(ValueError, match="position_weights"):
        ModelSpec("position_based", position_weights=(Fraction(3, 4), Fraction(1, 2)))
    with pytest.raises(ValueError, match="first_touch"):
        ModelSpec(
            "w_shaped", milestone_weights=((Milestone.LEAD_CREATED, Fraction(1)),)
        )
    with pytest.raises(ValueError, match="twice"):
        ModelSpec(
            "w_shaped",
            milestone_weights=(
                (Milestone.FIRST_TOUCH, Fraction(1, 4)),
                (Milestone.FIRST_TOUCH, Fraction(1, 4)),
            ),
        )
    with pytest.raises(ValueError, match="order"):
        ModelSpec("markov", order=0)


def test_model_spec_key_names_every_parameter() -> None:
    assert ModelSpec("linear").key == "linear(lookback=7776000s)"
    assert (
        ModelSpec("time_decay", half_life=timedelta(hours=36)).key
        == "time_decay(lookback=7776000s,half_life=129600s)"
    )
    assert ModelSpec("w_shaped").key == (
        "w_shaped(lookback=7776000s,milestone_weights="
        "first_touch:3/10+lead_created:3/10+opportunity_created:3/10)"
    )
    assert ModelSpec("shapley").key == (
        "shapley(lookback=7776000s,order=1,samples=2000,seed=0)"
    )
    assert hash(ModelSpec("full_path")) == hash(ModelSpec("full_path"))


def test_data_driven_models_need_training() -> None:
    for touches in (EXAMPLE_TOUCHES, ()):
        with pytest.raises(ValueError, match="data-driven"):
            credit("markov", touches, EXAMPLE_WIN)
    with pytest.raises(ValueError, match="empty journey"):
        weights(ModelSpec("linear"), [], EXAMPLE_WIN)


# --- Crediting with per-channel weights -------------------------------------------


def test_credit_by_channel_splits_over_channels_then_touches() -> None:
    spec = ModelSpec("markov")
    channel_weights = {
        "paid_social": Fraction(1, 2),
        "paid_search": Fraction(1, 4),
        "direct": Fraction(1, 4),
        "display": Fraction(5),
    }
    touches = [
        touch("a", "paid_social", at(1)),
        touch("b", "direct", at(2)),
        touch("c", "paid_social", at(3)),
        touch("d", "paid_search", at(4)),
        touch("e", "email", at(5)),
    ]
    conversion = Conversion(1000, "USD", at(6), at(6))
    result = credit_by_channel(spec, channel_weights, touches, conversion)
    # display is absent from the journey; email is unknown and weighs 0.
    assert amounts(result.credits) == [250, 250, 250, 250, 0]
    assert result.fallback is None
    assert result.model == spec


def test_credit_by_channel_falls_back_to_linear() -> None:
    touches = [touch("a", "email", at(1)), touch("b", "sms", at(2))]
    conversion = Conversion(-5, "USD", at(3), at(3))
    result = credit_by_channel(
        ModelSpec("markov"), {"email": Fraction(0)}, touches, conversion
    )
    assert result.fallback == "linear"
    assert amounts(result.credits) == [-3, -2]
    empty = credit_by_channel(ModelSpec("markov"), {}, [], conversion)
    assert empty.credits == (Credit(None, UNATTRIBUTED, None, None, -5),)
    with pytest.raises(ValueError, match="negative"):
        credit_by_channel(
            ModelSpec("markov"), {"email": Fraction(-1)}, touches, conversion
        )
