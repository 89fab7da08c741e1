"""DOMAIN.md section 6's earned growth example, through the insights computation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from closedloop.readmodels.customer_value import BOUGHT, EARNED
from services.insights.queries.customer_value import _growth
from services.insights.queries.periods import Window

START = 1_000  # the period starts here (microseconds); last period before it


@dataclass(frozen=True)
class Customer:
    acquired_at_us: int
    acquisition: str


def test_earned_growth_rate_of_the_domain_example() -> None:
    """Last year 10.0M; the same customers 10.5M (NRR 105%); new customers 2.0M,
    0.8M of it earned (ENC 8%): EGR 13%, total growth 25%."""
    known = {
        "old": Customer(acquired_at_us=10, acquisition=BOUGHT),
        "earned": Customer(acquired_at_us=START + 5, acquisition=EARNED),
        "bought": Customer(acquired_at_us=START + 6, acquisition=BOUGHT),
    }
    last = {("old", "USD"): 10_000_000_00}
    this = {
        ("old", "USD"): 10_500_000_00,
        ("earned", "USD"): 800_000_00,
        ("bought", "USD"): 1_200_000_00,
    }
    figures = _growth("USD", known, this, last, START, Window(START, None))

    assert figures.nrr == pytest.approx(1.05)
    assert figures.enc == pytest.approx(0.08)
    assert figures.egr == pytest.approx(0.13)
    assert figures.total_growth == pytest.approx(0.25)
    assert (figures.new_customers, figures.new_earned_customers) == (2, 1)
    assert figures.existing_customers == 1
