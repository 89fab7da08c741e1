"""customer_value: earned or bought, first win, and revenue per month."""

from __future__ import annotations

import pytest

from closedloop.readmodels.customer_value import (
    BOUGHT,
    EARNED,
    UNKNOWN,
    customers,
    monthly,
)
from closedloop.readmodels.identity import Touch
from closedloop.testing.readside import (
    apply_events,
    ident,
    scripted_quarter,
    snapshot,
)
from services.projector.projections.customer_value import (
    CustomerValue,
    acquisition_of,
)


def touch(channel: str, interaction: str = "page_view") -> Touch:
    return Touch("t", 0, 0, 0, channel, "", interaction)


@pytest.mark.parametrize(
    ("first", "acquisition"),
    [
        (touch("word_of_mouth"), EARNED),
        (touch("referral", "referral"), EARNED),
        (touch("paid_search", "referral"), EARNED),
        (touch("paid_search", "ad_click"), BOUGHT),
        (touch("paid_social"), BOUGHT),
        (touch("paid_video"), BOUGHT),
        (touch("display"), BOUGHT),
        (touch("paid_other"), BOUGHT),
        (touch("affiliate"), BOUGHT),
        (touch("referral"), UNKNOWN),
        (touch("organic_search"), UNKNOWN),
        (touch("direct"), UNKNOWN),
        (touch("email"), UNKNOWN),
        (None, UNKNOWN),
    ],
)
def test_earned_or_bought_comes_from_the_first_touch(
    first: Touch | None, acquisition: str
) -> None:
    assert acquisition_of(first) == acquisition


def test_customers_and_their_monthly_revenue() -> None:
    projection = CustomerValue()
    store, key = apply_events(projection, scripted_quarter().log.events, batch_size=4)
    rows = snapshot(store, projection, key)
    found = {row[0]: (row[2], row[3], row[5]) for row in rows[customers.name]}
    assert found == {
        ident("lead", "ann"): ("2026-02", "paid_search", BOUGHT),
        ident("lead", "cara"): ("2026-01", "word_of_mouth", EARNED),
        ident("lead", "dan"): ("2026-03", "paid_search", BOUGHT),
        ident("lead", "fay"): ("2026-04", "word_of_mouth", EARNED),
        ident("lead", "gus"): ("2026-05", "paid_social", BOUGHT),
    }
    cara = [row[1:] for row in rows[monthly.name] if row[0] == ident("lead", "cara")]
    assert cara == [("2026-01", "USD", 800_000), ("2026-04", "USD", 600_000)]
