"""What attribution reads and gives: touches, conversions, credits and model specs.

How a conversion is credited under a model is services.attribution.crediting
(heuristic models) and services.attribution.datadriven (trained ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "DATA_DRIVEN_MODELS",
    "DEFAULT_HALF_LIFE",
    "DEFAULT_LOOKBACK",
    "FULL_PATH_WEIGHTS",
    "MICROSECOND",
    "UNATTRIBUTED",
    "W_SHAPED_WEIGHTS",
    "Attribution",
    "Conversion",
    "Credit",
    "Milestone",
    "ModelSpec",
    "Touch",
]

DEFAULT_LOOKBACK = timedelta(days=90)
DEFAULT_HALF_LIFE = timedelta(days=7)
DEFAULT_POSITION_WEIGHTS = (Fraction(2, 5), Fraction(2, 5))
DEFAULT_SHAPLEY_SAMPLES = 2000
UNATTRIBUTED = "unattributed"
#: The unit every time difference is counted in, exactly.
MICROSECOND = timedelta(microseconds=1)


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
        seconds = Fraction(value // MICROSECOND, 1_000_000)
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


#: Models trained over all journeys; services.attribution.datadriven computes them.
DATA_DRIVEN_MODELS = ("markov", "shapley", "shapley_subset")
