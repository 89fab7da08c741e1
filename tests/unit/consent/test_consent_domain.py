"""The consent record on its own: point-in-time answers, scopes, erasure rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from eventsourcing.utils import get_topic

from closedloop.errors import FailedPrecondition, InvalidArgument
from services.consent.decisions import Decision, all_changes, decide, preferences_at
from services.consent.domain import (
    ChangeRequest,
    ChannelPreferences,
    Consent,
    Evidence,
    email_subject_id,
    lead_subject_id,
)
from services.consent.vocabulary import (
    EVERY_CHANNEL,
    MARKETING_PURPOSES,
    ChangeKind,
    Purpose,
    State,
)

if TYPE_CHECKING:
    from collections.abc import Callable

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
LEAD_ID = uuid.UUID("7d3c1f5e-2a4b-4c6d-8e9f-0a1b2c3d4e5f")
DIGEST = "ab" * 32


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def req(
    purpose: str = "newsletter",
    channel: str = "email",
    *,
    method: str = "form",
    source_system: str = "web_form",
    occurred_at: datetime = T0,
    legal_basis: str = "consent",
    key: str = "",
) -> ChangeRequest:
    return ChangeRequest(
        purpose=purpose,
        channel=channel,
        source_system=source_system,
        method=method,
        occurred_at=occurred_at,
        legal_basis=legal_basis,
        evidence=Evidence(notice_version="privacy-2024-02", capture_method="checkbox"),
        idempotency_key=key,
    )


def ask(
    record: Consent,
    purpose: str,
    channel: str,
    at: datetime,
    believed_at: datetime | None = None,
) -> Decision:
    return decide(all_changes([record]), purpose, channel, at, believed_at)


def state(record: Consent, purpose: str, channel: str, at: datetime) -> State:
    return ask(record, purpose, channel, at).state


# -- identity --------------------------------------------------------------------------


def test_records_are_keyed_by_lead_id_or_email_digest() -> None:
    lead = Consent.for_lead(LEAD_ID)
    email = Consent.for_email(DIGEST)
    assert lead.id == lead_subject_id(LEAD_ID)
    assert email.id == email_subject_id(DIGEST)
    assert lead.id != email.id
    assert (lead.lead_id, lead.email_digest) == (LEAD_ID, "")
    assert (email.lead_id, email.email_digest) == (None, DIGEST)
    assert email.email_digests == [DIGEST]


# -- point in time ---------------------------------------------------------------------


#: What a stored grant or withdrawal holds, in the order it is stored.
STORED_CHANGE_ATTRIBUTES = [
    "originator_id",
    "originator_version",
    "timestamp",
    "change_id",
    "purpose",
    "channel",
    "legal_basis",
    "source_system",
    "method",
    "notice_version",
    "notice_hash",
    "capture_method",
    "request_origin",
    "evidence_detail",
    "lead_id",
    "email",
    "email_digest",
    "occurred_at",
    "idempotency_key",
]


def test_grants_and_withdrawals_keep_their_stored_topics_and_attributes() -> None:
    record = Consent.for_lead(LEAD_ID)
    record.grant(req(key="grant-1"), recorded_at=day(1))
    record.withdraw(req(occurred_at=day(2)))
    _opened, granted, withdrawn = record.collect_events()

    assert get_topic(type(granted)) == "services.consent.domain:Consent.Granted"
    assert get_topic(type(withdrawn)) == "services.consent.domain:Consent.Withdrawn"
    assert list(vars(granted)) == STORED_CHANGE_ATTRIBUTES
    assert list(vars(withdrawn)) == STORED_CHANGE_ATTRIBUTES
    assert granted.timestamp == day(1)
    assert (granted.lead_id, granted.idempotency_key) == (LEAD_ID, "grant-1")
    assert (granted.notice_version, granted.capture_method) == (
        "privacy-2024-02",
        "checkbox",
    )
    assert withdrawn.occurred_at == day(2)


def test_never_asked_is_not_allowed() -> None:
    record = Consent.for_lead(LEAD_ID)
    answer = ask(record, "newsletter", "email", day(100))
    assert answer.state is State.NOT_OPTED
    assert answer.allowed is False
    assert answer.decided_by is None
    assert answer.reason.startswith("never asked")
    # a grant for another pair leaves this one never asked
    record.grant(req("marketing_email", "email", occurred_at=day(1)))
    assert state(record, "newsletter", "email", day(2)) is State.NOT_OPTED
    assert state(record, "marketing_email", "sms", day(2)) is State.NOT_OPTED


def test_grant_withdraw_regrant_answered_at_every_point_in_time() -> None:
    record = Consent.for_lead(LEAD_ID)
    first, _ = record.grant(req(occurred_at=day(1)))
    withdrawn, _ = record.withdraw(
        req(method="unsubscribe_link", source_system="email_tool", occurred_at=day(3))
    )
    again, _ = record.grant(req(method="preference_centre", occurred_at=day(5)))

    expected = [
        (day(0), State.NOT_OPTED, None),
        (day(1) - timedelta(microseconds=1), State.NOT_OPTED, None),
        (day(1), State.OPTED_IN, first),  # at or before t: the grant's own instant
        (day(2), State.OPTED_IN, first),
        (day(3), State.OPTED_OUT, withdrawn),
        (day(4), State.OPTED_OUT, withdrawn),
        (day(5), State.OPTED_IN, again),
        (day(50), State.OPTED_IN, again),
    ]
    for at, want, decided_by in expected:
        answer = ask(record, "newsletter", "email", at)
        assert answer.state is want, at
        assert answer.allowed is (want is State.OPTED_IN)
        assert (answer.decided_by.change_id if answer.decided_by else None) == (
            decided_by
        ), at


def test_business_time_orders_changes_recorded_out_of_order() -> None:
    record = Consent.for_lead(LEAD_ID)
    withdrawn, _ = record.withdraw(req(occurred_at=day(3)))
    granted, _ = record.grant(req(method="import", occurred_at=day(1)))  # backfill

    assert ask(record, "newsletter", "email", day(2)).decided_by.change_id == granted
    assert state(record, "newsletter", "email", day(2)) is State.OPTED_IN
    assert ask(record, "newsletter", "email", day(4)).decided_by.change_id == withdrawn
    assert state(record, "newsletter", "email", day(4)) is State.OPTED_OUT


def test_equal_business_times_are_ordered_by_recording_order() -> None:
    grant_first = Consent.for_lead(LEAD_ID)
    grant_first.grant(req(occurred_at=day(1)))
    last, _ = grant_first.withdraw(req(occurred_at=day(1)))

    withdraw_first = Consent.for_email(DIGEST)
    withdraw_first.withdraw(req(occurred_at=day(1)))
    later, _ = withdraw_first.grant(req(occurred_at=day(1)))

    out = ask(grant_first, "newsletter", "email", day(1))
    assert (out.state, out.decided_by.change_id) == (State.OPTED_OUT, last)
    back_in = ask(withdraw_first, "newsletter", "email", day(1))
    assert (back_in.state, back_in.decided_by.change_id) == (State.OPTED_IN, later)


def test_equal_times_keep_recording_order_with_equal_recorded_times() -> None:
    record = Consent.for_lead(LEAD_ID)
    recorded = day(10)
    record.grant(req(occurred_at=day(1)), recorded_at=recorded)
    last, _ = record.withdraw(req(occurred_at=day(1)), recorded_at=recorded)
    assert ask(record, "newsletter", "email", day(2)).decided_by.change_id == last


def test_pending_confirmation_is_not_allowed_until_confirmed() -> None:
    record = Consent.for_email(DIGEST)
    requested, _ = record.grant(
        req(method="double_opt_in_requested", occurred_at=day(1))
    )
    confirmed, _ = record.grant(
        req(method="double_opt_in_confirmed", occurred_at=day(3))
    )

    pending = ask(record, "newsletter", "email", day(2))
    assert pending.state is State.PENDING_CONFIRMATION
    assert pending.allowed is False
    assert pending.decided_by.change_id == requested
    assert "not confirmed" in pending.reason
    confirmed_answer = ask(record, "newsletter", "email", day(3))
    assert confirmed_answer.state is State.OPTED_IN
    assert confirmed_answer.allowed is True
    assert confirmed_answer.decided_by.change_id == confirmed


def test_a_double_opt_in_request_does_not_undo_an_opt_in() -> None:
    record = Consent.for_email(DIGEST)
    granted, _ = record.grant(req(occurred_at=day(1)))
    record.grant(req(method="double_opt_in_requested", occurred_at=day(2)))
    answer = ask(record, "newsletter", "email", day(3))
    assert (answer.state, answer.decided_by.change_id) == (State.OPTED_IN, granted)
    # after an opt-out, a new request is pending again
    record.withdraw(req(occurred_at=day(4)))
    requested, _ = record.grant(
        req(method="double_opt_in_requested", occurred_at=day(5))
    )
    answer = ask(record, "newsletter", "email", day(6))
    assert (answer.state, answer.decided_by.change_id) == (
        State.PENDING_CONFIRMATION,
        requested,
    )


# -- scopes ----------------------------------------------------------------------------


def test_global_opt_out_covers_every_purpose_on_its_channel_only() -> None:
    record = Consent.for_lead(LEAD_ID)
    for purpose, channel in [
        ("newsletter", "email"),
        ("product_updates", "email"),
        ("newsletter", "sms"),
    ]:
        record.grant(req(purpose, channel, occurred_at=day(1)))
    everything, _ = record.withdraw(req("all", "email", occurred_at=day(2)))

    for purpose in ["newsletter", "product_updates", "research", "sales_contact"]:
        answer = ask(record, purpose, "email", day(3))
        assert answer.state is State.OPTED_OUT, purpose
        assert answer.decided_by.change_id == everything
        assert answer.decided_by.purpose == Purpose.ALL
        assert answer.decided_by.channel == "email"
    assert "every purpose by email" in ask(record, "newsletter", "email", day(3)).reason
    assert state(record, "newsletter", "sms", day(3)) is State.OPTED_IN

    # a later specific grant re-opens only what it names
    reopened, _ = record.grant(req("newsletter", "email", occurred_at=day(4)))
    assert ask(record, "newsletter", "email", day(5)).decided_by.change_id == reopened
    assert state(record, "newsletter", "email", day(5)) is State.OPTED_IN
    assert state(record, "product_updates", "email", day(5)) is State.OPTED_OUT
    assert state(record, "newsletter", "email", day(3)) is State.OPTED_OUT


def test_a_withdrawal_without_channel_covers_every_channel() -> None:
    record = Consent.for_lead(LEAD_ID)
    for channel in ["email", "sms", "post"]:
        record.grant(req("newsletter", channel, occurred_at=day(1)))
    record.grant(req("marketing_email", "email", occurred_at=day(1)))
    record.withdraw(req("newsletter", EVERY_CHANNEL, occurred_at=day(2)))

    for channel in ["email", "sms", "post", "web"]:
        assert state(record, "newsletter", channel, day(3)) is State.OPTED_OUT
    assert state(record, "marketing_email", "email", day(3)) is State.OPTED_IN


def test_objection_to_direct_marketing_covers_marketing_on_every_channel() -> None:
    record = Consent.for_lead(LEAD_ID)
    pairs = [
        ("newsletter", "email"),
        ("sales_contact", "phone"),
        ("sales_contact", "email"),
        ("profiling", "web"),
        ("event_invitations", "post"),
        ("research", "email"),
    ]
    for purpose, channel in pairs:
        record.grant(req(purpose, channel, occurred_at=day(1)))
    objection, _ = record.withdraw(
        req("direct_marketing_objection", EVERY_CHANNEL, occurred_at=day(2))
    )

    for purpose, channel in pairs:
        answer = ask(record, purpose, channel, day(3))
        if purpose in MARKETING_PURPOSES:
            assert answer.state is State.OPTED_OUT, (purpose, channel)
            assert answer.decided_by.change_id == objection
            assert "art. 21" in answer.reason
        else:
            assert answer.state is State.OPTED_IN, (purpose, channel)
    assert state(record, "marketing_email", "in_app", day(3)) is State.OPTED_OUT

    record.grant(req("sales_contact", "phone", occurred_at=day(4)))
    assert state(record, "sales_contact", "phone", day(5)) is State.OPTED_IN
    assert state(record, "sales_contact", "email", day(5)) is State.OPTED_OUT
    assert state(record, "newsletter", "email", day(5)) is State.OPTED_OUT


def test_an_objection_names_no_channel() -> None:
    record = Consent.for_lead(LEAD_ID)
    with pytest.raises(InvalidArgument) as raised:
        record.withdraw(req("direct_marketing_objection", "email"))
    assert raised.value.field == "channel"
    assert record.pending_events[1:] == []


def test_gpc_withdraws_sale_and_sharing_but_not_email_marketing() -> None:
    record = Consent.for_lead(LEAD_ID)
    record.grant(req("marketing_email", "email", occurred_at=day(1)))
    record.grant(req("third_party_sharing", "web", occurred_at=day(1)))
    record.grant(req("profiling", "web", occurred_at=day(1)))
    record.grant(req("profiling", "email", occurred_at=day(1)))

    change_ids, created = record.record_global_privacy_control(
        day(2),
        evidence=Evidence(request_origin="Sec-GPC: 1 from 203.0.113.9"),
        idempotency_key="gpc-1",
    )

    assert created is True
    assert len(change_ids) == 2
    for purpose in ["third_party_sharing", "profiling"]:
        for channel in ["web", "email", "sms"]:
            answer = ask(record, purpose, channel, day(3))
            assert answer.state is State.OPTED_OUT, (purpose, channel)
            assert answer.decided_by.method == "gpc"
            assert answer.decided_by.source_system == "gpc"
            assert answer.decided_by.change_id in change_ids
            assert "Global Privacy Control" in answer.reason
    assert state(record, "marketing_email", "email", day(3)) is State.OPTED_IN
    gpc_changes = record.changes[-2:]
    assert [c.purpose for c in gpc_changes] == ["third_party_sharing", "profiling"]
    assert {c.channel for c in gpc_changes} == {EVERY_CHANNEL}
    assert {c.kind for c in gpc_changes} == {ChangeKind.WITHDRAWN}

    again, created_again = record.record_global_privacy_control(
        day(2), idempotency_key="gpc-1"
    )
    assert (again, created_again) == (change_ids, False)
    assert len(record.changes) == 6


# -- recorded time ---------------------------------------------------------------------


def test_believed_at_differs_from_business_time_for_a_backdated_import() -> None:
    record = Consent.for_lead(LEAD_ID)
    granted, _ = record.grant(req(occurred_at=day(1)), recorded_at=day(1))
    # learned on day 30 that the person had unsubscribed in another tool on day 2
    imported, _ = record.withdraw(
        req(method="import", source_system="import", occurred_at=day(2)),
        recorded_at=day(30),
    )

    # business time, with everything recorded since: they had opted out by day 10
    known_now = ask(record, "newsletter", "email", day(10))
    assert known_now.state is State.OPTED_OUT
    assert known_now.decided_by.change_id == imported
    # what we believed on day 10: only the grant had been recorded
    believed = ask(record, "newsletter", "email", day(10), believed_at=day(10))
    assert believed.state is State.OPTED_IN
    assert believed.allowed is True
    assert believed.decided_by.change_id == granted
    assert believed.decided_by.recorded_at == day(1)
    # once the import was recorded, we believed the opt-out
    later = ask(record, "newsletter", "email", day(31), believed_at=day(31))
    assert (later.state, later.decided_by.change_id) == (State.OPTED_OUT, imported)
    assert later.decided_by.recorded_at == day(30)
    assert later.decided_by.occurred_at == day(2)
    # before anything was recorded we believed nothing
    nothing = ask(record, "newsletter", "email", day(1), believed_at=day(0))
    assert nothing.state is State.NOT_OPTED
    assert "as recorded by" in nothing.reason


def test_a_backdated_withdrawal_older_than_the_grant_does_not_win() -> None:
    record = Consent.for_lead(LEAD_ID)
    granted, _ = record.grant(req(occurred_at=day(5)), recorded_at=day(5))
    record.withdraw(req(method="import", occurred_at=day(2)), recorded_at=day(30))
    answer = ask(record, "newsletter", "email", day(31), believed_at=day(31))
    assert (answer.state, answer.decided_by.change_id) == (State.OPTED_IN, granted)
    assert state(record, "newsletter", "email", day(3)) is State.OPTED_OUT


def test_the_answer_names_the_deciding_event() -> None:
    record = Consent.for_lead(LEAD_ID)
    change_id, _ = record.grant(
        req(
            "sales_contact",
            "phone",
            method="sales_rep",
            source_system="call_centre",
            legal_basis="legitimate_interest",
            occurred_at=day(1),
        ),
        recorded_at=day(1) + timedelta(hours=2),
    )
    answer = ask(record, "sales_contact", "phone", day(2))
    decided_by = answer.decided_by
    assert decided_by.change_id == change_id
    assert decided_by.kind is ChangeKind.GRANTED
    assert decided_by.subject_aggregate_id == record.id
    assert decided_by.lead_id == LEAD_ID
    assert (decided_by.purpose, decided_by.channel) == ("sales_contact", "phone")
    assert decided_by.source_system == "call_centre"
    assert decided_by.method == "sales_rep"
    assert decided_by.legal_basis == "legitimate_interest"
    assert decided_by.occurred_at == day(1)
    assert decided_by.recorded_at == day(1) + timedelta(hours=2)
    assert decided_by.evidence.notice_version == "privacy-2024-02"
    assert "sales_rep via call_centre" in answer.reason
    assert "legitimate_interest" in answer.reason


# -- rules of requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (req("all", "email"), "purpose"),
        (req("direct_marketing_objection", "email"), "purpose"),
        (req("newsletter", ""), "channel"),
        (req(method="unsubscribe_link"), "method"),
        (req(method="gpc"), "method"),
        (req(method=""), "method"),
        (req(source_system="gpc"), "source_system"),
    ],
)
def test_bad_grants_are_refused_and_record_nothing(
    request_: ChangeRequest, field: str
) -> None:
    record = Consent.for_lead(LEAD_ID)
    with pytest.raises(InvalidArgument) as raised:
        record.grant(request_)
    assert raised.value.field == field
    assert [type(e).__qualname__ for e in record.pending_events] == ["Consent.Opened"]


@pytest.mark.parametrize(
    "method", ["double_opt_in_confirmed", "double_opt_in_requested"]
)
def test_withdrawals_cannot_use_opt_in_methods(method: str) -> None:
    record = Consent.for_lead(LEAD_ID)
    with pytest.raises(InvalidArgument) as raised:
        record.withdraw(req(method=method))
    assert raised.value.field == "method"


def test_idempotency_key_records_one_change() -> None:
    record = Consent.for_lead(LEAD_ID)
    first, created = record.grant(req(key="form-1"))
    again, created_again = record.grant(req(key="form-1", occurred_at=day(9)))
    same_key_withdraw, created_withdraw = record.withdraw(req(key="form-1"))
    other, _ = record.grant(req(key="form-2"))

    assert (created, created_again, created_withdraw) == (True, False, False)
    assert first == again == same_key_withdraw
    assert other != first
    assert len(record.changes) == 2
    assert first == uuid.uuid5(record.id, "change:form-1")


# -- erasure ---------------------------------------------------------------------------


def test_erasure_opts_out_from_then_on_and_keeps_the_past() -> None:
    record = Consent.for_email(DIGEST)
    granted, _ = record.grant(req(occurred_at=day(1)))
    assert record.erase(day(5)) is True

    before = ask(record, "newsletter", "email", day(4))
    assert (before.state, before.decided_by.change_id) == (State.OPTED_IN, granted)
    after = ask(record, "newsletter", "email", day(6))
    assert after.state is State.OPTED_OUT
    assert after.decided_by.kind is ChangeKind.ERASED
    assert after.decided_by.email_digest == DIGEST
    assert "erased" in after.reason
    assert record.suppressed is True
    assert len(record.changes) == 1
    assert len(record.erasures) == 1
    # erasing again with nothing new records nothing
    assert record.erase(day(6)) is False
    assert len(record.erasures) == 1


def test_an_erased_email_refuses_imported_grants_only() -> None:
    record = Consent.for_email(DIGEST)
    record.grant(req(occurred_at=day(1)))
    record.erase(day(2))

    for imported in (
        req(source_system="import", method="form", occurred_at=day(3)),
        req(source_system="crm", method="import", occurred_at=day(3)),
    ):
        with pytest.raises(FailedPrecondition, match="suppressed: this person asked"):
            record.grant(imported)
    # the person came back and signed up themselves: that re-opens what it names
    record.grant(req(occurred_at=day(4)))
    assert state(record, "newsletter", "email", day(5)) is State.OPTED_IN
    assert state(record, "marketing_email", "email", day(5)) is State.OPTED_OUT
    with pytest.raises(FailedPrecondition, match="suppressed"):
        record.grant(req("marketing_email", source_system="import", occurred_at=day(5)))
    # something changed since the erasure: erasing again records a new tombstone
    assert record.erase(day(6)) is True
    assert len(record.erasures) == 2


def test_a_linked_erased_email_refuses_an_imported_grant_to_the_lead() -> None:
    email_record = Consent.for_email(DIGEST)
    email_record.erase(day(1))
    lead_record = Consent.for_lead(LEAD_ID)
    with pytest.raises(FailedPrecondition, match="suppressed"):
        lead_record.grant(req(source_system="import"), linked=[email_record])
    lead_record.grant(req(source_system="web_form"), linked=[email_record])
    assert len(lead_record.changes) == 1


def test_an_erased_lead_takes_no_more_changes() -> None:
    record = Consent.for_lead(LEAD_ID)
    record.grant(req(occurred_at=day(1)))
    record.erase(day(2), email_digest=DIGEST)
    assert record.erasures[0].email_digest == DIGEST
    assert record.erasures[0].lead_id == LEAD_ID
    attempts: list[Callable[[], object]] = [
        lambda: record.grant(req(occurred_at=day(3))),
        lambda: record.withdraw(req(occurred_at=day(3))),
        lambda: record.record_global_privacy_control(day(3)),
        lambda: record.set_preferences(
            [ChannelPreferences("email", ("ai",), "weekly")], "web_form", day(3)
        ),
    ]
    for attempt in attempts:
        with pytest.raises(FailedPrecondition, match="was erased"):
            attempt()
    assert len(record.changes) == 1
    assert record.erase(day(4)) is False


# -- preferences -----------------------------------------------------------------------


def test_preferences_at_a_point_in_time() -> None:
    record = Consent.for_lead(LEAD_ID)
    record.set_preferences(
        [ChannelPreferences("email", ("product", "events"), "weekly")],
        "preference_centre",
        day(1),
        recorded_at=day(1),
    )
    record.set_preferences(
        [
            ChannelPreferences("email", ("product",), "monthly"),
            ChannelPreferences("sms", (), "never"),
        ],
        "preference_centre",
        day(3),
        recorded_at=day(20),
    )
    changes = record.preference_changes

    assert preferences_at(changes, "email", day(0)) is None
    assert preferences_at(changes, "email", day(2)) == ChannelPreferences(
        "email", ("product", "events"), "weekly"
    )
    assert preferences_at(changes, "email", day(4)).frequency == "monthly"
    assert preferences_at(changes, "sms", day(2)) is None
    assert preferences_at(changes, "sms", day(4)).frequency == "never"
    assert preferences_at(changes, "email", day(4), believed_at=day(10)).frequency == (
        "weekly"
    )


def test_preferences_name_each_channel_once() -> None:
    record = Consent.for_lead(LEAD_ID)
    with pytest.raises(InvalidArgument) as raised:
        record.set_preferences(
            [
                ChannelPreferences("email", (), "weekly"),
                ChannelPreferences("email", (), "daily"),
            ],
            "web_form",
            day(1),
        )
    assert raised.value.field == "preferences"
    assert record.preference_changes == []
