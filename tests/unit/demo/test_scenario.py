"""The simulated quarter is deterministic and its channels differ as documented."""

from __future__ import annotations

from collections import Counter

from apps.demo.scenario import QUARTER_END, QUARTER_START, plan_quarter


def kinds_by_channel(seed: int, visitors: int) -> dict[str, Counter[str]]:
    plan = plan_quarter(seed, visitors)
    by_channel: dict[str, Counter[str]] = {}
    for person in plan.people:
        by_channel.setdefault(person.channel, Counter()).update(
            s.kind for s in person.steps
        )
    return by_channel


def test_the_same_seed_gives_the_same_quarter() -> None:
    first, again = plan_quarter(11, 800), plan_quarter(11, 800)
    assert [(p.key, p.steps) for p in first.people] == [
        (p.key, p.steps) for p in again.people
    ]
    assert first.spend == again.spend
    other = plan_quarter(12, 800)
    assert [p.steps for p in other.people] != [p.steps for p in first.people]


def test_every_step_lies_in_the_quarter_and_in_order() -> None:
    plan = plan_quarter(3, 1500)
    for person in plan.people:
        times = [s.at for s in person.steps]
        assert times == sorted(times)
        assert all(QUARTER_START <= t < QUARTER_END for t in times)
        kinds = [s.kind for s in person.steps]
        if "win" in kinds:
            assert (
                kinds.index("capture") < kinds.index("open_deal") < kinds.index("win")
            )
        if "merge" in kinds:
            assert kinds.index("duplicate") < kinds.index("merge")


def test_channels_behave_as_documented() -> None:
    by_channel = kinds_by_channel(5, 20_000)
    social, events = by_channel["paid_social"], by_channel["events"]
    # Paid social brings many more leads than events ...
    assert social["capture"] > 2 * events["capture"]
    # ... that close far less often.
    social_close = social["win"] / social["open_deal"]
    events_close = events["win"] / events["open_deal"]
    assert events_close > 2 * social_close
    # Word of mouth converts best of all: earned customers.
    wom = by_channel["word_of_mouth"]
    assert wom["win"] / wom["capture"] > social["win"] / social["capture"]


def test_spend_covers_the_paid_channels_only() -> None:
    plan = plan_quarter(1, 3000)
    channels = {s.channel for s in plan.spend}
    assert {"paid_social", "paid_search", "display", "events"} <= channels
    assert "word_of_mouth" not in channels
    assert "organic_search" not in channels
    assert all(s.amount > 0 and s.period_start < s.period_end for s in plan.spend)
