"""Months and the exact split of an amount over the months of a period."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from closedloop.projections.times import (
    micros_of,
    month_of,
    months_between,
    next_month,
    parse_month,
    previous_month,
    split_by_month,
)


def us(text: str) -> int:
    return micros_of(datetime.fromisoformat(text).replace(tzinfo=UTC))


def test_months_step_over_year_ends() -> None:
    assert next_month("2026-12") == "2027-01"
    assert previous_month("2026-01") == "2025-12"
    assert months_between("2025-11", "2026-02") == [
        "2025-11",
        "2025-12",
        "2026-01",
        "2026-02",
    ]
    assert month_of(us("2026-03-31T23:59:59.999999")) == "2026-03"


@pytest.mark.parametrize("bad", ["2026-13", "2026-3", "26-03", "", "2026-00"])
def test_a_month_is_year_dash_two_digit_month(bad: str) -> None:
    with pytest.raises(ValueError, match="not a month"):
        parse_month(bad)


def test_a_quarter_of_spend_splits_by_days() -> None:
    # 90 days: January 31, February 28, March 31.
    parts = split_by_month(us("2026-01-01T00:00"), us("2026-04-01T00:00"), 900_000)
    assert parts == {"2026-01": 310_000, "2026-02": 280_000, "2026-03": 310_000}


def test_a_split_always_sums_to_the_amount() -> None:
    parts = split_by_month(us("2026-01-15T06:00"), us("2026-03-02T00:00"), 1_000_001)
    assert sum(parts.values()) == 1_000_001
    assert list(parts) == ["2026-01", "2026-02", "2026-03"]
    negative = split_by_month(
        us("2026-01-15T06:00"), us("2026-03-02T00:00"), -1_000_001
    )
    assert negative == {month: -amount for month, amount in parts.items()}


def test_an_empty_period_goes_to_its_first_month() -> None:
    assert split_by_month(us("2026-02-10T00:00"), us("2026-02-10T00:00"), 5) == {
        "2026-02": 5
    }
