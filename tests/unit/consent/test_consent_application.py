"""The consent application over eventsourcing's in-process store, with group commit."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from closedloop.errors import FailedPrecondition, InvalidArgument
from closedloop.eventstore.metadata import EventMeta
from closedloop.eventstore.personal import TOKEN_PREFIX
from closedloop.eventstore.unit_of_work import CommandExecutor
from closedloop.identity import email_digest
from services.consent.application import (
    CheckConsent,
    Consents,
    ConsentStore,
    EraseSubject,
    GrantConsent,
    RecordGlobalPrivacyControl,
    SetPreferences,
    Subject,
    WithdrawConsent,
)
from services.consent.domain import (
    NAMESPACE,
    ChannelPreferences,
    Evidence,
    email_subject_id,
    lead_subject_id,
)
from services.consent.vocabulary import ChangeKind, State

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SECRET = b"test-secret"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
EMAIL = "ann.lima@example.com"
ORIGIN = "203.0.113.7 Mozilla/5.0 https://example.com/pricing"


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.fixture
async def consents() -> AsyncIterator[Consents]:
    store = ConsentStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    executor = CommandExecutor(store)
    yield Consents(store, executor, secret_key=SECRET)
    await executor.close()
    store.close()


def grant(
    subject: Subject,
    purpose: str = "newsletter",
    channel: str = "email",
    *,
    occurred_at: datetime = T0,
    source_system: str = "web_form",
    method: str = "form",
    key: str = "",
) -> GrantConsent:
    return GrantConsent(
        subject=subject,
        purpose=purpose,
        channel=channel,
        source_system=source_system,
        method=method,
        occurred_at=occurred_at,
        evidence=Evidence(
            notice_version="privacy-2024-02",
            notice_hash="sha256:9f2c",
            capture_method="checkbox newsletter-footer",
            request_origin=ORIGIN,
            detail=f"signed up as {EMAIL}",
        ),
        idempotency_key=key,
    )


def withdraw(
    subject: Subject,
    purpose: str = "newsletter",
    channel: str = "email",
    *,
    occurred_at: datetime = T0,
    key: str = "",
) -> WithdrawConsent:
    return WithdrawConsent(
        subject=subject,
        purpose=purpose,
        channel=channel,
        source_system="email_tool",
        method="unsubscribe_link",
        occurred_at=occurred_at,
        evidence=Evidence(
            notice_version="privacy-2024-02",
            notice_hash="sha256:9f2c",
            request_origin=ORIGIN,
        ),
        idempotency_key=key,
    )


def check(
    consents: Consents,
    subject: Subject,
    at: datetime,
    purpose: str = "newsletter",
    channel: str = "email",
) -> Any:
    return consents.check_consent(CheckConsent(subject, purpose, channel, at)).decision


def stored_events(consents: Consents, aggregate_id: uuid.UUID) -> list[Any]:
    return list(consents.store.events.get(aggregate_id))


def raw_states(consents: Consents) -> list[tuple[str, dict[str, Any]]]:
    """Every stored event as the store holds it: topic and decoded JSON state."""
    notifications = consents.store.recorder.select_notifications(start=1, limit=1000)
    return [(n.topic, json.loads(n.state)) for n in notifications]


# -- idempotency -----------------------------------------------------------------------


async def test_idempotency_keys_return_the_same_change(consents: Consents) -> None:
    lead = Subject(lead_id=uuid.uuid4())
    meta = EventMeta.new()
    first = await consents.grant_consent(grant(lead, key="form-7781"), meta)
    again = await consents.grant_consent(
        grant(lead, occurred_at=day(3), key="form-7781"), meta
    )
    other_subject = await consents.grant_consent(
        grant(Subject(email=EMAIL), key="form-7781"), meta
    )
    out = await consents.withdraw_consent(withdraw(lead, key="unsub-1"), meta)
    out_again = await consents.withdraw_consent(withdraw(lead, key="unsub-1"), meta)
    gpc = await consents.record_global_privacy_control(
        RecordGlobalPrivacyControl(lead, day(1), idempotency_key="gpc-1"), meta
    )
    gpc_again = await consents.record_global_privacy_control(
        RecordGlobalPrivacyControl(lead, day(2), idempotency_key="gpc-1"), meta
    )
    prefs = SetPreferences(
        lead, (ChannelPreferences("email", ("ai",), "weekly"),), "web_form", T0, "p-1"
    )
    pref = await consents.set_preferences(prefs, meta)
    pref_again = await consents.set_preferences(prefs, meta)

    assert first.created is True
    assert (again.change_id, again.created) == (first.change_id, False)
    assert other_subject.created is True
    assert other_subject.change_id != first.change_id
    assert (out_again.change_id, out_again.created) == (out.change_id, False)
    assert len(gpc.change_ids) == 2
    assert (gpc_again.change_ids, gpc_again.created) == (gpc.change_ids, False)
    assert (pref_again.change_id, pref_again.created) == (pref.change_id, False)
    assert first.subject_aggregate_id == lead_subject_id(lead.lead_id)
    assert [
        type(e).__qualname__
        for e in stored_events(consents, first.subject_aggregate_id)
    ] == [
        "Consent.Opened",
        "Consent.Granted",
        "Consent.Withdrawn",
        "Consent.Withdrawn",
        "Consent.Withdrawn",
        "Consent.PreferencesChanged",
    ]
    history = consents.get_consent_history(lead)
    assert history.changes[0].occurred_at == T0  # the first call's, not the retry's


async def test_same_key_twice_in_one_batch_records_once(consents: Consents) -> None:
    subject = Subject(email=EMAIL)
    results = await asyncio.gather(
        *(
            consents.grant_consent(grant(subject, key="k"), EventMeta.new())
            for _ in range(5)
        )
    )
    assert [r.created for r in results] == [True, False, False, False, False]
    assert len({r.change_id for r in results}) == 1
    record_id = results[0].subject_aggregate_id
    assert [type(e).__qualname__ for e in stored_events(consents, record_id)] == [
        "Consent.Opened",
        "Consent.Granted",
    ]


async def test_a_refused_first_change_leaves_no_record(consents: Consents) -> None:
    subject = Subject(lead_id=uuid.uuid4())
    with pytest.raises(InvalidArgument) as raised:
        await consents.grant_consent(grant(subject, "all"), EventMeta.new())
    assert raised.value.field == "purpose"
    assert stored_events(consents, lead_subject_id(subject.lead_id)) == []
    assert consents.store.recorder.max_notification_id() in (None, 0)


# -- email subjects and lead subjects --------------------------------------------------


async def test_an_email_subject_is_joined_to_its_lead_by_email(
    consents: Consents,
) -> None:
    meta = EventMeta.new()
    before_lead = Subject(email=EMAIL)
    lead_id = uuid.uuid4()
    lead_only = Subject(lead_id=lead_id)
    lead_with_email = Subject(lead_id=lead_id, email=EMAIL)

    pre_lead = await consents.grant_consent(
        grant(before_lead, occurred_at=day(1)), meta
    )

    digest = email_digest(SECRET, "  Ann.Lima@EXAMPLE.com ")
    assert pre_lead.subject_aggregate_id == email_subject_id(digest)
    assert pre_lead.subject_aggregate_id == uuid.uuid5(NAMESPACE, f"email:{digest}")
    # the lead's own history alone: never asked
    assert check(consents, lead_only, day(2)).state is State.NOT_OPTED
    # folded with the pre-lead email history: the email's grant decides
    joined = check(consents, lead_with_email, day(2))
    assert joined.state is State.OPTED_IN
    assert joined.decided_by.change_id == pre_lead.change_id
    assert joined.decided_by.subject_aggregate_id == pre_lead.subject_aggregate_id

    # a later withdrawal recorded for the lead wins over the earlier email grant
    out = await consents.withdraw_consent(
        withdraw(lead_with_email, occurred_at=day(5)), meta
    )
    assert check(consents, lead_with_email, day(3)).state is State.OPTED_IN
    answer = check(consents, lead_with_email, day(6))
    assert (answer.state, answer.decided_by.change_id) == (
        State.OPTED_OUT,
        out.change_id,
    )
    # and a later grant to the email subject wins over the lead's withdrawal
    back = await consents.grant_consent(grant(before_lead, occurred_at=day(7)), meta)
    answer = check(consents, lead_with_email, day(8))
    assert (answer.state, answer.decided_by.change_id) == (
        State.OPTED_IN,
        back.change_id,
    )
    assert check(consents, lead_only, day(8)).state is State.OPTED_OUT

    # both histories carry the same digest, the one the lead service computes
    history = consents.get_consent_history(lead_with_email)
    assert history.subject_aggregate_ids == (
        lead_subject_id(lead_id),
        email_subject_id(digest),
    )
    assert [c.change_id for c in history.changes] == [
        pre_lead.change_id,
        out.change_id,
        back.change_id,
    ]
    assert {c.email_digest for c in history.changes} == {digest}
    assert [c.lead_id for c in history.changes] == [None, lead_id, None]
    assert [c.email for c in history.changes] == [EMAIL, EMAIL, EMAIL]


async def test_history_is_in_business_time_then_recording_order(
    consents: Consents,
) -> None:
    subject = Subject(lead_id=uuid.uuid4())
    meta = EventMeta.new()
    late = await consents.grant_consent(grant(subject, occurred_at=day(5)), meta)
    early = await consents.withdraw_consent(withdraw(subject, occurred_at=day(1)), meta)
    tie_a = await consents.grant_consent(
        grant(subject, "research", occurred_at=day(3)), meta
    )
    tie_b = await consents.withdraw_consent(
        withdraw(subject, "research", occurred_at=day(3)), meta
    )
    history = consents.get_consent_history(subject)
    assert [c.change_id for c in history.changes] == [
        early.change_id,
        tie_a.change_id,
        tie_b.change_id,
        late.change_id,
    ]
    assert [c.kind for c in history.changes] == [
        ChangeKind.WITHDRAWN,
        ChangeKind.GRANTED,
        ChangeKind.WITHDRAWN,
        ChangeKind.GRANTED,
    ]
    assert all(
        c.recorded_at > datetime(2025, 1, 1, tzinfo=UTC) for c in history.changes
    )


async def test_preferences_are_answered_with_the_check(consents: Consents) -> None:
    subject = Subject(email=EMAIL)
    await consents.grant_consent(grant(subject, occurred_at=day(1)), EventMeta.new())
    await consents.set_preferences(
        SetPreferences(
            subject,
            (
                ChannelPreferences("email", ("product", "events"), "weekly"),
                ChannelPreferences("sms", (), "never"),
            ),
            "preference_centre",
            day(2),
        ),
        EventMeta.new(),
    )
    answer = consents.check_consent(
        CheckConsent(subject, "newsletter", "email", day(3))
    )
    assert answer.decision.allowed is True
    assert answer.preferences == ChannelPreferences(
        "email", ("product", "events"), "weekly"
    )
    earlier = consents.check_consent(
        CheckConsent(subject, "newsletter", "email", day(1))
    )
    assert earlier.preferences is None
    history = consents.get_consent_history(subject)
    assert len(history.preference_changes) == 1
    assert history.preference_changes[0].email == EMAIL


# -- erasure ---------------------------------------------------------------------------


async def test_erasure_shreds_personal_fields_and_keeps_the_changes(
    consents: Consents,
) -> None:
    meta = EventMeta.new()
    email_subject = Subject(email=EMAIL)
    lead_id = uuid.uuid4()
    lead = Subject(lead_id=lead_id, email=EMAIL)
    await consents.grant_consent(grant(email_subject, occurred_at=day(1)), meta)
    await consents.grant_consent(
        grant(lead, "product_updates", occurred_at=day(2)), meta
    )
    await consents.withdraw_consent(withdraw(lead, occurred_at=day(3)), meta)
    await consents.set_preferences(
        SetPreferences(
            lead, (ChannelPreferences("email", ("ai",), "weekly"),), "web_form", day(3)
        ),
        meta,
    )

    # before erasure: readable through the service, never in the clear in the store
    before = consents.get_consent_history(lead)
    assert [c.email for c in before.changes] == [EMAIL] * 3
    assert {c.evidence.request_origin for c in before.changes} == {ORIGIN}
    stored = raw_states(consents)
    changes = [s for topic, s in stored if topic.endswith(("Granted", "Withdrawn"))]
    assert len(changes) == 3
    for state in changes:
        assert state["email"].startswith(TOKEN_PREFIX)
        assert state["request_origin"].startswith(TOKEN_PREFIX)
    for _, state in stored:
        assert EMAIL not in str(state)
        assert "203.0.113.7" not in str(state)
    assert all(EMAIL not in str(n.state) for n in _notifications(consents))

    result = await consents.erase_subject(EraseSubject(lead, day(4)), meta)

    digest = consents.email_digest(EMAIL)
    assert result.created is True
    assert result.subject_aggregate_ids == (
        lead_subject_id(lead_id),
        email_subject_id(digest),
    )
    assert result.suppressed_email_digests == (digest,)
    for record_id in result.subject_aggregate_ids:
        assert consents.store.subject_keys.is_erased(str(record_id))

    after = consents.get_consent_history(lead)
    assert len(after.changes) == len(before.changes) == 3
    assert len(after.preference_changes) == len(before.preference_changes) == 1
    for old, new in zip(before.changes, after.changes, strict=True):
        assert new.email == ""
        assert new.evidence.request_origin == ""
        assert new.evidence.detail == ""
        assert (new.change_id, new.purpose, new.channel, new.kind) == (
            old.change_id,
            old.purpose,
            old.channel,
            old.kind,
        )
        assert (new.occurred_at, new.recorded_at) == (old.occurred_at, old.recorded_at)
        assert (new.source_system, new.method, new.legal_basis) == (
            old.source_system,
            old.method,
            old.legal_basis,
        )
        assert new.evidence.notice_version == "privacy-2024-02"
        assert new.evidence.notice_hash == "sha256:9f2c"
        assert new.email_digest == digest
    assert after.preference_changes[0].email == ""
    assert [(e.kind, e.lead_id, e.email_digest) for e in after.erasures] == [
        (ChangeKind.ERASED, lead_id, digest),
        (ChangeKind.ERASED, None, digest),
    ]
    # the tombstones hold nothing personal
    erased_states = [
        s for topic, s in raw_states(consents) if topic.endswith("SubjectErased")
    ]
    assert [s["email_digest"] for s in erased_states] == [digest, digest]
    # from the erasure on nothing is allowed; before it, the history still answers
    assert check(consents, lead, day(5), "product_updates").state is State.OPTED_OUT
    assert check(consents, lead, day(2.5), "product_updates").state is State.OPTED_IN

    again = await consents.erase_subject(EraseSubject(lead, day(6)), meta)
    assert again.created is False
    assert len(consents.get_consent_history(lead).erasures) == 2


def _notifications(consents: Consents) -> list[Any]:
    return list(consents.store.recorder.select_notifications(start=1, limit=1000))


async def test_a_suppressed_email_refuses_a_later_imported_grant(
    consents: Consents,
) -> None:
    meta = EventMeta.new()
    subject = Subject(email=EMAIL)
    await consents.grant_consent(grant(subject, occurred_at=day(1)), meta)
    await consents.erase_subject(EraseSubject(subject, day(2)), meta)
    top = consents.store.recorder.max_notification_id()

    imports = [
        grant(subject, source_system="import", occurred_at=day(3)),
        grant(subject, source_system="crm", method="import", occurred_at=day(3)),
        grant(Subject(email=EMAIL.upper()), source_system="import", occurred_at=day(3)),
        grant(
            Subject(lead_id=uuid.uuid4(), email=EMAIL),
            source_system="import",
            occurred_at=day(3),
        ),
    ]
    for command in imports:
        with pytest.raises(
            FailedPrecondition, match="suppressed: this person asked to be erased"
        ):
            await consents.grant_consent(command, meta)
    assert consents.store.recorder.max_notification_id() == top

    # the person signed up again themselves: recorded, with nothing personal kept
    back = await consents.grant_consent(grant(subject, occurred_at=day(4)), meta)
    assert back.created is True
    history = consents.get_consent_history(subject)
    assert len(history.changes) == 2
    assert history.changes[-1].email == ""
    assert history.changes[-1].evidence.request_origin == ""
    assert check(consents, subject, day(5)).state is State.OPTED_IN


async def test_erasing_a_lead_suppresses_the_emails_it_was_recorded_with(
    consents: Consents,
) -> None:
    meta = EventMeta.new()
    lead_id = uuid.uuid4()
    await consents.grant_consent(
        grant(Subject(lead_id=lead_id, email=EMAIL), occurred_at=day(1)), meta
    )

    result = await consents.erase_subject(
        EraseSubject(Subject(lead_id=lead_id), day(2)), meta
    )

    digest = consents.email_digest(EMAIL)
    assert result.suppressed_email_digests == (digest,)
    assert email_subject_id(digest) in result.subject_aggregate_ids
    with pytest.raises(FailedPrecondition, match="suppressed"):
        await consents.grant_consent(
            grant(Subject(email=EMAIL), source_system="import"), meta
        )
    with pytest.raises(FailedPrecondition, match="was erased"):
        await consents.grant_consent(grant(Subject(lead_id=lead_id)), meta)
    with pytest.raises(FailedPrecondition, match="was erased"):
        await consents.withdraw_consent(withdraw(Subject(lead_id=lead_id)), meta)


async def test_erasing_an_unknown_subject_leaves_a_tombstone(
    consents: Consents,
) -> None:
    lead_id = uuid.uuid4()
    result = await consents.erase_subject(
        EraseSubject(Subject(lead_id=lead_id), day(1)), EventMeta.new()
    )
    assert result.created is True
    assert result.subject_aggregate_ids == (lead_subject_id(lead_id),)
    assert result.suppressed_email_digests == ()
    assert [
        type(e).__qualname__ for e in stored_events(consents, lead_subject_id(lead_id))
    ] == [
        "Consent.Opened",
        "Consent.SubjectErased",
    ]


# -- metadata --------------------------------------------------------------------------


async def test_every_stored_event_carries_the_meta_of_its_command(
    consents: Consents,
) -> None:
    subject = Subject(lead_id=uuid.uuid4(), email=EMAIL)
    metas = [EventMeta.new(correlation_id=f"corr-{n}") for n in range(3)]
    await asyncio.gather(
        consents.grant_consent(grant(subject), metas[0]),
        consents.withdraw_consent(withdraw(subject, "research"), metas[1]),
    )
    await consents.erase_subject(EraseSubject(subject, day(1)), metas[2])

    lead_events = stored_events(consents, lead_subject_id(subject.lead_id))
    assert [(type(e).__qualname__, EventMeta.of(e)) for e in lead_events] == [
        ("Consent.Opened", metas[0]),
        ("Consent.Granted", metas[0]),
        ("Consent.Withdrawn", metas[1]),
        ("Consent.SubjectErased", metas[2]),
    ]
    email_events = stored_events(
        consents, email_subject_id(consents.email_digest(EMAIL))
    )
    assert [EventMeta.of(e) for e in email_events] == [metas[2], metas[2]]
