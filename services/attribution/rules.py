"""The model and channel names attribution knows; checks of what a command carries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from closedloop.errors import InvalidArgument
from closedloop.money import Money, check_currency

if TYPE_CHECKING:
    from datetime import datetime

#: Heuristic models, weighing each journey on its own (DOMAIN.md 4.3).
HEURISTIC_MODELS = (
    "first_touch",
    "last_touch",
    "last_non_direct",
    "linear",
    "time_decay",
    "position_based",
    "w_shaped",
    "full_path",
)
#: Models trained over all journeys, converting and not (DOMAIN.md 4.5, 4.6).
DATA_DRIVEN_MODELS = ("markov", "shapley")
#: Every model a conversion is credited under, in the order they are listed.
MODELS = HEURISTIC_MODELS + DATA_DRIVEN_MODELS

#: The channel names touchpoints are grouped into (DOMAIN.md 2), as the lead context
#: records them; spend is recorded against the same names.
CHANNELS = (
    "direct",
    "paid_search",
    "paid_social",
    "paid_video",
    "display",
    "paid_other",
    "organic_search",
    "organic_social",
    "organic_video",
    "email",
    "affiliate",
    "events",
    "sms",
    "referral",
    "word_of_mouth",
    "unassigned",
)


def check_model(field_name: str, model: str, allowed: tuple[str, ...] = MODELS) -> str:
    value = model.strip()
    if not value:
        raise InvalidArgument(field_name, "is required")
    if value not in allowed:
        raise InvalidArgument(
            field_name, f"unknown model {model!r}; use one of {', '.join(allowed)}"
        )
    return value


def check_channel(field_name: str, channel: str) -> str:
    value = channel.strip().lower()
    if not value:
        raise InvalidArgument(field_name, "is required")
    if value not in CHANNELS:
        raise InvalidArgument(
            field_name, f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}"
        )
    return value


def check_spend_amount(field_name: str, amount: Money) -> Money:
    currency = check_currency(f"{field_name}.currency", amount.currency)
    if amount.minor_units < 0:
        raise InvalidArgument(f"{field_name}.minor_units", "must not be negative")
    return Money(amount.minor_units, currency)


def check_period(start: datetime, end: datetime) -> None:
    """A period is [start, end): it must end after it starts."""
    if end <= start:
        raise InvalidArgument(
            "period_end",
            f"{end.isoformat()} does not lie after period_start {start.isoformat()}",
        )
