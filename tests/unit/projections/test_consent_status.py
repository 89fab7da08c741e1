"""consent_status: the fold of DOMAIN.md 5 and the rows it leaves."""

from __future__ import annotations

import pytest

from closedloop.consent.v1 import types_pb2 as c
from closedloop.readmodels.consent_status import (
    ERASED,
    GRANTED,
    NOT_OPTED,
    OPTED_IN,
    OPTED_OUT,
    PENDING,
    WITHDRAWN,
    Change,
    changes,
    decide,
    states,
)
from closedloop.testing.readside import (
    Scenario,
    apply_events,
    ident,
    scripted_quarter,
    snapshot,
    subject_of_lead,
)
from services.projector.projections.consent_status import ConsentStatus

DAY = 86_400_000_000


def change(
    kind: str,
    day: int,
    purpose: str = "newsletter",
    channel: str = "email",
    method: str = "form",
) -> Change:
    return Change(
        f"{kind}-{day}-{purpose}",
        kind,
        purpose,
        channel,
        method,
        day * DAY,
        day * DAY,
        day,
    )


@pytest.mark.parametrize(
    ("history", "purpose", "channel", "state"),
    [
        ([], "newsletter", "email", NOT_OPTED),
        ([change(GRANTED, 1)], "newsletter", "email", OPTED_IN),
        ([change(GRANTED, 1)], "newsletter", "sms", NOT_OPTED),
        (
            [change(GRANTED, 1, method="double_opt_in_requested")],
            "newsletter",
            "email",
            PENDING,
        ),
        (
            [
                change(GRANTED, 1, method="double_opt_in_requested"),
                change(GRANTED, 2, method="double_opt_in_confirmed"),
            ],
            "newsletter",
            "email",
            OPTED_IN,
        ),
        (
            [change(GRANTED, 1), change(GRANTED, 2, method="double_opt_in_requested")],
            "newsletter",
            "email",
            OPTED_IN,
        ),
        (
            [change(GRANTED, 1), change(WITHDRAWN, 2, "all")],
            "newsletter",
            "email",
            OPTED_OUT,
        ),
        (
            [change(GRANTED, 1, channel="sms"), change(WITHDRAWN, 2, "all")],
            "newsletter",
            "sms",
            OPTED_IN,
        ),
        (
            [change(GRANTED, 1), change(WITHDRAWN, 2, "all"), change(GRANTED, 3)],
            "newsletter",
            "email",
            OPTED_IN,
        ),
        (
            [
                change(GRANTED, 1),
                change(WITHDRAWN, 2, "direct_marketing_objection", ""),
            ],
            "newsletter",
            "email",
            OPTED_OUT,
        ),
        (
            [
                change(GRANTED, 1, "research"),
                change(WITHDRAWN, 2, "direct_marketing_objection", ""),
            ],
            "research",
            "email",
            OPTED_IN,
        ),
        (
            [change(GRANTED, 1), change(ERASED, 2, "all", "")],
            "newsletter",
            "email",
            OPTED_OUT,
        ),
        # Business time decides, not arrival: an old withdrawal imported later.
        ([change(GRANTED, 5), change(WITHDRAWN, 2)], "newsletter", "email", OPTED_IN),
    ],
)
def test_the_latest_covering_change_decides(
    history: list[Change], purpose: str, channel: str, state: str
) -> None:
    assert decide(history, purpose, channel).state == state
    assert decide(list(reversed(history)), purpose, channel).state == state


def test_the_quarter_leaves_each_subject_its_current_states() -> None:
    projection = ConsentStatus()
    store, key = apply_events(projection, scripted_quarter().log.events, batch_size=5)
    rows = snapshot(store, projection, key)
    by_subject: dict[str, set[tuple[str, str, str]]] = {}
    for subject, purpose, channel, state, *_ in rows[states.name]:
        by_subject.setdefault(subject, set()).add((purpose, channel, state))
    assert by_subject[subject_of_lead("ann")] == {
        ("newsletter", "email", OPTED_IN),
        ("marketing_email", "email", OPTED_OUT),
    }
    assert by_subject[subject_of_lead("bob")] == {
        ("third_party_sharing", "", OPTED_OUT),
        ("profiling", "", OPTED_OUT),
    }
    assert by_subject[subject_of_lead("eve")] == {
        ("newsletter", "email", OPTED_OUT),
        ("all", "", OPTED_OUT),
    }
    assert len(rows[changes.name]) == 10
    # The audit trail keeps no personal field: the stream's tokens never land here.
    assert "pii:v1" not in repr(rows)


def test_a_double_opt_in_is_pending_until_confirmed() -> None:
    s = Scenario()
    subject, lead = subject_of_lead("x"), ident("lead", "x")
    s.consent(
        subject,
        "2026-01-01",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_DOUBLE_OPT_IN_REQUESTED,
        lead_id=lead,
    )
    projection = ConsentStatus()
    store, key = apply_events(projection, s.log.events)
    assert [r[3] for r in snapshot(store, projection, key)[states.name]] == [PENDING]
    s.consent(
        subject,
        "2026-01-02",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_DOUBLE_OPT_IN_CONFIRMED,
        lead_id=lead,
    )
    store, key = apply_events(projection, s.log.events)
    assert [r[3] for r in snapshot(store, projection, key)[states.name]] == [OPTED_IN]
