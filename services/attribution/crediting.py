"""Crediting a conversion to its journey: the heuristic models and exact rounding.

Every share is exact (fractions; time decay through 50-digit decimals), and money is
rounded once, at the end, by the largest-remainder method, so the credits of a
conversion always sum to its amount (DOMAIN.md 4.1 to 4.4).
"""

from __future__ import annotations

from bisect import bisect_right
from decimal import Decimal, localcontext
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

from services.attribution.models import (
    DEFAULT_LOOKBACK,
    MICROSECOND,
    UNATTRIBUTED,
    Attribution,
    Conversion,
    Credit,
    Milestone,
    ModelSpec,
    Touch,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from datetime import datetime, timedelta

__all__ = [
    "DIRECT",
    "HEURISTIC_MODELS",
    "counted_touches",
    "credit",
    "credit_by_channel",
    "largest_remainder",
    "milestones",
    "weights",
]

DIRECT = "direct"
#: Precision of the time-decay powers: far beyond a minor unit of any amount, so the
#: rounding below decides every cent, not the arithmetic.
DECIMAL_DIGITS = 50


def _journey_key(touch: Touch) -> tuple[datetime, int, str]:
    return (touch.occurred_at, touch.recorded_order, touch.touchpoint_id)


def counted_touches(
    touches: Iterable[Touch],
    conversion: Conversion,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> list[Touch]:
    """The journey of a conversion (4.1), in journey order.

    A touch counts when it is at or before the conversion and not earlier than
    `lookback` before the lead was created. Journey order is business time, then
    recording order, then touch id: the same touches always give the same order.
    """
    start = conversion.lead_created_at - lookback
    return sorted(
        (t for t in touches if start <= t.occurred_at <= conversion.converted_at),
        key=_journey_key,
    )


def milestones(
    journey: Sequence[Touch], conversion: Conversion
) -> dict[Milestone, int | None]:
    """Index of each milestone's touch in the journey, None where it has none (4.2).

    LC, OC and CW are the last touch at or before their event; an event that has not
    happened (no opportunity yet) has no touch, as has one preceded by no touch.
    """

    def last_at_or_before(moment: datetime | None) -> int | None:
        if moment is None:
            return None
        index = bisect_right(journey, moment, key=lambda t: t.occurred_at) - 1
        return index if index >= 0 else None

    return {
        Milestone.FIRST_TOUCH: 0 if journey else None,
        Milestone.LEAD_CREATED: last_at_or_before(conversion.lead_created_at),
        Milestone.OPPORTUNITY_CREATED: last_at_or_before(
            conversion.opportunity_created_at
        ),
        Milestone.CLOSED_WON: last_at_or_before(conversion.won_at),
    }


def _one_hot(n: int, index: int) -> list[Fraction]:
    shares = [Fraction(0)] * n
    shares[index] = Fraction(1)
    return shares


def _first_touch(
    journey: Sequence[Touch], _conversion: Conversion, _spec: ModelSpec
) -> list[Fraction]:
    """100% to the first counted touch."""
    return _one_hot(len(journey), 0)


def _last_touch(
    journey: Sequence[Touch], _conversion: Conversion, _spec: ModelSpec
) -> list[Fraction]:
    """100% to the last counted touch."""
    return _one_hot(len(journey), len(journey) - 1)


def _last_non_direct(
    journey: Sequence[Touch], _conversion: Conversion, _spec: ModelSpec
) -> list[Fraction]:
    """100% to the last touch whose channel is not `direct`; all direct: the last.

    Direct visits mostly show a person who was already won over elsewhere.
    """
    index = next(
        (i for i in reversed(range(len(journey))) if journey[i].channel != DIRECT),
        len(journey) - 1,
    )
    return _one_hot(len(journey), index)


def _linear(
    journey: Sequence[Touch], _conversion: Conversion, _spec: ModelSpec
) -> list[Fraction]:
    """1/n to each of the n touches."""
    return [Fraction(1, len(journey))] * len(journey)


def _time_decay(
    journey: Sequence[Touch], conversion: Conversion, spec: ModelSpec
) -> list[Fraction]:
    """w_i = 2^(-Δt_i / h), normalised; Δt_i = conversion time - touch time, exact.

    Δt is counted in microseconds, not whole days. The powers are irrational, so they
    are taken to 50 significant digits, the same on every platform (decimal is
    software arithmetic), and then normalised exactly.
    """
    if spec.half_life is None:  # pragma: no cover - ModelSpec fills it in
        raise ValueError("time_decay needs a half_life")
    half_life = spec.half_life // MICROSECOND
    with localcontext() as context:
        context.prec = DECIMAL_DIGITS
        powers = [
            Fraction(
                Decimal(2)
                ** (
                    Decimal(-((conversion.converted_at - t.occurred_at) // MICROSECOND))
                    / Decimal(half_life)
                )
            )
            for t in journey
        ]
    total = sum(powers, Fraction(0))
    return [p / total for p in powers]


def _position_based(
    journey: Sequence[Touch], _conversion: Conversion, spec: ModelSpec
) -> list[Fraction]:
    """One touch 100%; two split first:last; else first, last, the rest between.

    Defaults 40% first, 40% last, 20% evenly between (GA's position-based), and
    50/50 for two touches.
    """
    if spec.position_weights is None:  # pragma: no cover - ModelSpec fills it in
        raise ValueError("position_based needs position_weights")
    first, last = spec.position_weights
    n = len(journey)
    if n == 1:
        return [Fraction(1)]
    if n == 2:  # noqa: PLR2004 - first and last only
        return [first / (first + last), last / (first + last)]
    between = (1 - first - last) / (n - 2)
    return [first, *([between] * (n - 2)), last]


def _milestone_based(
    journey: Sequence[Touch], conversion: Conversion, spec: ModelSpec
) -> list[Fraction]:
    """Fixed shares to milestone touches, the rest evenly over the other touches.

    Marketo Measure's U-shaped (50/50 first touch and lead creation) is w_shaped
    with milestone_weights of 1/2 each for those two.

    w_shaped: 30% each to FT, LC and OC; full_path: 22.5% each to FT, LC, OC and CW;
    10% evenly over every other counted touch (those after OC included). Milestones
    on the same touch add up. A milestone with no touch gives its share to the
    present milestones in proportion to theirs, and so does the 10% when there is no
    other touch; both scale the present milestones by one factor, so the order of the
    two steps does not matter.
    """
    if spec.milestone_weights is None:  # pragma: no cover - ModelSpec fills it in
        raise ValueError(f"{spec.name} needs milestone_weights")
    where = milestones(journey, conversion)
    present = [
        (index, w) for m, w in spec.milestone_weights if (index := where[m]) is not None
    ]
    on_milestones = {index for index, _ in present}
    others = [i for i in range(len(journey)) if i not in on_milestones]
    milestone_total = sum((w for _, w in spec.milestone_weights), Fraction(0))
    if not others:
        milestone_total = Fraction(1)
    scale = milestone_total / sum((w for _, w in present), Fraction(0))
    shares = [Fraction(0)] * len(journey)
    for index, w in present:
        shares[index] += w * scale
    for index in others:
        shares[index] = (1 - milestone_total) / len(others)
    return shares


HEURISTIC_MODELS: Mapping[
    str, Callable[[Sequence[Touch], Conversion, ModelSpec], list[Fraction]]
] = MappingProxyType(
    {
        "first_touch": _first_touch,
        "last_touch": _last_touch,
        "last_non_direct": _last_non_direct,
        "linear": _linear,
        "time_decay": _time_decay,
        "position_based": _position_based,
        "w_shaped": _milestone_based,
        "full_path": _milestone_based,
    }
)


def weights(
    spec: ModelSpec, journey: Sequence[Touch], conversion: Conversion
) -> list[Fraction]:
    """Exact share of each touch of a non-empty journey (from counted_touches).

    The shares sum to exactly 1; money is rounded from them by largest_remainder.
    """
    if not journey:
        raise ValueError("an empty journey has no weights; it is unattributed")
    model = HEURISTIC_MODELS.get(spec.name)
    if model is None:
        raise ValueError(f"{spec.name} is data-driven: train it with datadriven")
    return model(journey, conversion, spec)


def largest_remainder(amount_minor: int, shares: Sequence[Fraction]) -> list[int]:
    """Split an integer amount in proportion to exact shares, summing exactly.

    Floor every exact part, then give one minor unit each to the largest remainders
    until the total is exact. Equal remainders go to the lower index: callers pass
    touches in journey order, so ties go to the earlier touch, then the lower id.
    A negative amount is split as its absolute value and negated, so a refund takes
    back exactly what the sale gave.
    """
    if not shares:
        raise ValueError("no shares to split over")
    if any(s < 0 for s in shares):
        raise ValueError("shares must not be negative")
    total = sum(shares, Fraction(0))
    if total <= 0:
        raise ValueError("shares must not all be zero")
    size = abs(amount_minor)
    exact = [size * s / total for s in shares]
    parts = [e.numerator // e.denominator for e in exact]
    left = size - sum(parts)
    by_remainder = sorted(range(len(exact)), key=lambda i: (parts[i] - exact[i], i))
    for index in by_remainder[:left]:
        parts[index] += 1
    sign = -1 if amount_minor < 0 else 1
    return [sign * p for p in parts]


def _attribution(
    spec: ModelSpec,
    journey: Sequence[Touch],
    shares: Sequence[Fraction],
    amount_minor: int,
    currency: str,
    fallback: str | None = None,
) -> Attribution:
    amounts = largest_remainder(amount_minor, shares)
    return Attribution(
        model=spec,
        currency=currency,
        credits=tuple(
            Credit(t.touchpoint_id, t.channel, t.campaign, t.occurred_at, amount)
            for t, amount in zip(journey, amounts, strict=True)
        ),
        fallback=fallback,
    )


def _unattributed(spec: ModelSpec, amount_minor: int, currency: str) -> Attribution:
    row = Credit(None, UNATTRIBUTED, None, None, amount_minor)
    return Attribution(model=spec, currency=currency, credits=(row,))


def credit(
    spec: ModelSpec | str,
    touches: Iterable[Touch],
    conversion: Conversion,
    *,
    amount_minor: int | None = None,
) -> Attribution:
    """Credit a conversion to its journey's touches under a heuristic model.

    Selects the journey (4.1), weighs it, and rounds to minor units (4.4): one credit
    per counted touch in journey order, zero credits included, summing exactly to
    the amount. No counted touch: one `unattributed` credit of the whole amount.

    Revenue recognised after the win (renewal, expansion, contraction, churn) is
    credited with the journey as it stood at the win: pass the win's conversion and
    the recognised amount as `amount_minor` (negative for contraction and churn).
    """
    if isinstance(spec, str):
        spec = ModelSpec(spec)
    if spec.name not in HEURISTIC_MODELS:
        raise ValueError(f"{spec.name} is data-driven: train it with datadriven")
    amount = conversion.amount_minor if amount_minor is None else amount_minor
    journey = counted_touches(touches, conversion, spec.lookback)
    if not journey:
        return _unattributed(spec, amount, conversion.currency)
    shares = weights(spec, journey, conversion)
    return _attribution(spec, journey, shares, amount, conversion.currency)


def credit_by_channel(
    spec: ModelSpec,
    channel_weights: Mapping[str, Fraction],
    touches: Iterable[Touch],
    conversion: Conversion,
    *,
    amount_minor: int | None = None,
) -> Attribution:
    """Credit a conversion with per-channel weights learnt from all journeys.

    The amount splits over the channels present in the journey in proportion to
    their weights (a channel the weights do not know weighs 0), then evenly over
    each channel's touches, then rounds as 4.4. When every present channel weighs 0
    the split is linear and the result says so in `fallback`. `amount_minor` works
    as in credit().
    """
    amount = conversion.amount_minor if amount_minor is None else amount_minor
    journey = counted_touches(touches, conversion, spec.lookback)
    if not journey:
        return _unattributed(spec, amount, conversion.currency)
    touches_per_channel: dict[str, int] = {}
    for touch in journey:
        touches_per_channel[touch.channel] = (
            touches_per_channel.get(touch.channel, 0) + 1
        )
    present = {c: Fraction(channel_weights.get(c, 0)) for c in touches_per_channel}
    if any(w < 0 for w in present.values()):
        raise ValueError("channel weights must not be negative")
    total = sum(present.values(), Fraction(0))
    if total == 0:
        shares = _linear(journey, conversion, spec)
        return _attribution(
            spec, journey, shares, amount, conversion.currency, fallback="linear"
        )
    shares = [
        present[t.channel] / total / touches_per_channel[t.channel] for t in journey
    ]
    return _attribution(spec, journey, shares, amount, conversion.currency)
