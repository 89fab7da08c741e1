"""Journeys, milestones, heuristic attribution models and exact money rounding.

Every share is exact (fractions; time decay through 50-digit decimals), and money is
rounded once, at the end, by the largest-remainder method, so the credits of a
conversion always sum to its amount (DOMAIN.md 4.1 to 4.4).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = [
    "DATA_DRIVEN_MODELS",
    "DEFAULT_HALF_LIFE",
    "DEFAULT_LOOKBACK",
    "DIRECT",
    "FULL_PATH_WEIGHTS",
    "HEURISTIC_MODELS",
    "UNATTRIBUTED",
    "W_SHAPED_WEIGHTS",
    "Attribution",
    "Conversion",
    "Credit",
    "Milestone",
    "ModelSpec",
    "Touch",
    "counted_touches",
    "credit",
    "credit_by_channel",
    "largest_remainder",
    "milestones",
    "weights",
]

DEFAULT_LOOKBACK = timedelta(days=90)
DEFAULT_HALF_LIFE = timedelta(days=7)
DEFAULT_POSITION_WEIGHTS = (Fraction(2, 5), Fraction(2, 5))
DEFAULT_SHAPLEY_SAMPLES = 2000
DIRECT = "direct"
UNATTRIBUTED = "unattributed"
#: Precision of the time-decay powers: far beyond a minor unit of any amount, so the
#: rounding below decides every cent, not the arithmetic.
DECIMAL_DIGITS = 50
_MICROSECOND = timedelta(microseconds=1)


class Milestone(StrEnum):
    """The turning points of a journey (DOMAIN.md 4.2)."""

    FIRST_TOUCH = "first_touch"
    LEAD_CREATED = "lead_created"
    OPPORTUNITY_CREATED = "opportunity_created"
    CLOSED_WON = "closed_won"


W_SHAPED_WEIGHTS: tuple[tuple[Milestone, Fraction], ...] = (
    (Milestone.FIRST_TOUCH, Fraction(3, 10)),
    (Milestone.LEAD_CREATED, Fraction(3, 10)),
    (Milestone.OPPORTUNITY_CREATED, Fraction(3, 10)),
)
FULL_PATH_WEIGHTS: tuple[tuple[Milestone, Fraction], ...] = (
    (Milestone.FIRST_TOUCH, Fraction(9, 40)),
    (Milestone.LEAD_CREATED, Fraction(9, 40)),
    (Milestone.OPPORTUNITY_CREATED, Fraction(9, 40)),
    (Milestone.CLOSED_WON, Fraction(9, 40)),
)


def _check_aware(name: str, moment: datetime | None) -> None:
    if moment is not None and moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True)
class Touch:
    """One touchpoint of a person's journey, reduced to what attribution reads.

    `recorded_order` orders touches with equal business times (4.2), so a journey's
    order, and with it every tie in the rounding, never depends on input order.
    """

    touchpoint_id: str
    channel: str
    campaign: str | None
    occurred_at: datetime
    recorded_order: int

    def __post_init__(self) -> None:
        _check_aware("occurred_at", self.occurred_at)


@dataclass(frozen=True)
class Conversion:
    """An amount to credit, at a business time, with the milestone times of its deal.

    `converted_at` bounds the journey (later touches never count); the lead,
    opportunity and won times place the LC, OC and CW milestones. Pipeline is an
    opportunity's amount with `converted_at` at its opening; revenue is the won amount
    with `converted_at` at the win.
    """

    amount_minor: int
    currency: str
    converted_at: datetime
    lead_created_at: datetime
    opportunity_created_at: datetime | None = None
    won_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in (
            "converted_at",
            "lead_created_at",
            "opportunity_created_at",
            "won_at",
        ):
            _check_aware(name, getattr(self, name))


@dataclass(frozen=True)
class Credit:
    """The part of a conversion's amount credited to one touch.

    The `unattributed` row (no touch id, channel `unattributed`) carries the whole
    amount of a conversion that has no counted touch, so totals always reconcile.
    """

    touchpoint_id: str | None
    channel: str
    campaign: str | None
    occurred_at: datetime | None
    amount_minor: int


_OPTIONAL_PARAMETERS = (
    "half_life",
    "position_weights",
    "milestone_weights",
    "order",
    "samples",
    "seed",
)
_MODEL_DEFAULTS: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {
        "first_touch": {},
        "last_touch": {},
        "last_non_direct": {},
        "linear": {},
        "time_decay": {"half_life": DEFAULT_HALF_LIFE},
        "position_based": {"position_weights": DEFAULT_POSITION_WEIGHTS},
        "w_shaped": {"milestone_weights": W_SHAPED_WEIGHTS},
        "full_path": {"milestone_weights": FULL_PATH_WEIGHTS},
        "markov": {"order": 1},
        "shapley": {"order": 1, "samples": DEFAULT_SHAPLEY_SAMPLES, "seed": 0},
        "shapley_subset": {},
    }
)


@dataclass(frozen=True)
class ModelSpec:
    """A model's name with every parameter that changes its numbers: its identity.

    Results are comparable only under equal specs, and a changed parameter means a
    new projection version, so defaults are filled in and parameters the model does
    not use are refused: `ModelSpec("time_decay")` equals
    `ModelSpec("time_decay", half_life=timedelta(days=7))`.

    - `lookback`: how far before lead creation touches still count (every model).
    - `half_life`: time_decay.
    - `position_weights`: (first, last) of position_based; the rest goes between.
    - `milestone_weights`: (milestone, share) pairs of w_shaped and full_path; the
      rest goes evenly to the other touches. First touch must be among them, so
      a journey always has a present milestone.
    - `order`: markov and shapley (states are the last `order` channels).
    - `samples`, `seed`: shapley's permutation sampling beyond 16 channels.
    """

    name: str
    lookback: timedelta = DEFAULT_LOOKBACK
    half_life: timedelta | None = None
    position_weights: tuple[Fraction, Fraction] | None = None
    milestone_weights: tuple[tuple[Milestone, Fraction], ...] | None = None
    order: int | None = None
    samples: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        defaults = _MODEL_DEFAULTS.get(self.name)
        if defaults is None:
            raise ValueError(f"unknown attribution model {self.name!r}")
        for parameter in _OPTIONAL_PARAMETERS:
            if parameter in defaults:
                if getattr(self, parameter) is None:
                    object.__setattr__(self, parameter, defaults[parameter])
            elif getattr(self, parameter) is not None:
                raise ValueError(f"{self.name} takes no {parameter}")
        self._check_values()

    def _check_values(self) -> None:
        if self.lookback < timedelta(0):
            raise ValueError("lookback must not be negative")
        if self.half_life is not None and self.half_life <= timedelta(0):
            raise ValueError("half_life must be positive")
        if self.position_weights is not None:
            first, last = (Fraction(w) for w in self.position_weights)
            if first < 0 or last < 0 or first + last == 0 or first + last > 1:
                raise ValueError("position_weights must be >= 0, sum > 0 and <= 1")
            object.__setattr__(self, "position_weights", (first, last))
        if self.milestone_weights is not None:
            object.__setattr__(
                self, "milestone_weights", _checked_milestones(self.milestone_weights)
            )
        if self.order is not None and self.order < 1:
            raise ValueError("order must be at least 1")
        if self.samples is not None and self.samples < 1:
            raise ValueError("samples must be at least 1")

    @property
    def key(self) -> str:
        """A stable text form of the identity, to store beside the results."""
        parts = [f"lookback={_text(self.lookback)}"]
        parts.extend(
            f"{parameter}={_text(getattr(self, parameter))}"
            for parameter in _OPTIONAL_PARAMETERS
            if getattr(self, parameter) is not None
        )
        return f"{self.name}({','.join(parts)})"


def _checked_milestones(
    pairs: Iterable[tuple[Milestone, Fraction]],
) -> tuple[tuple[Milestone, Fraction], ...]:
    checked = tuple((Milestone(m), Fraction(w)) for m, w in pairs)
    names = [m for m, _ in checked]
    if len(set(names)) != len(names):
        raise ValueError("milestone_weights names a milestone twice")
    if Milestone.FIRST_TOUCH not in names:
        raise ValueError("milestone_weights must include first_touch")
    if any(w <= 0 for _, w in checked) or sum(w for _, w in checked) > 1:
        raise ValueError("milestone_weights must be > 0 and sum to at most 1")
    return checked


def _text(value: object) -> str:
    if isinstance(value, timedelta):
        seconds = Fraction(value // _MICROSECOND, 1_000_000)
        return f"{seconds}s"
    if isinstance(value, tuple):
        return "+".join(
            ":".join(_text(v) for v in item) if isinstance(item, tuple) else _text(item)
            for item in value
        )
    return str(value)


@dataclass(frozen=True)
class Attribution:
    """The credits of one conversion under one model.

    `model` is the model's full identity, so credits under different parameters are
    never mixed. `fallback` names the model actually applied when the requested one
    had nothing to go on (a data-driven model with no weight for any channel of the
    journey falls back to linear), so a report can say so.
    """

    model: ModelSpec
    currency: str
    credits: tuple[Credit, ...]
    fallback: str | None = None


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
    half_life = spec.half_life // _MICROSECOND
    with localcontext() as context:
        context.prec = DECIMAL_DIGITS
        powers = [
            Fraction(
                Decimal(2)
                ** (
                    Decimal(
                        -((conversion.converted_at - t.occurred_at) // _MICROSECOND)
                    )
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
#: Models trained over all journeys; services.attribution.datadriven computes them.
DATA_DRIVEN_MODELS = ("markov", "shapley", "shapley_subset")


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
