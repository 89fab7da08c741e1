"""Bad requests against the real ConsentService over gRPC: refused, named, unrecorded.

Every case is one valid request with a single thing wrong. Each must fail with the
documented status code, name the offending field (INVALID_ARGUMENT: in the details and
in the first google.rpc.BadRequest violation), never leak a Python traceback, and write
no event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp

from closedloop.config import ServiceConfig
from closedloop.consent.v1 import consent_service_pb2 as pb
from closedloop.consent.v1 import consent_service_pb2_grpc, types_pb2
from closedloop.testing.pages import pages_of
from closedloop.testing.refusals import assert_refused
from services.consent.__main__ import bootstrap

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from closedloop.natsserver import NatsServer
    from closedloop.service import Service

pytestmark = [pytest.mark.nats, pytest.mark.asyncio(loop_scope="module")]

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

KNOWN_LEAD_ID = "5b1f7c9e-3d4a-4e8b-9c2d-000000000001"
ERASED_LEAD_ID = "5b1f7c9e-3d4a-4e8b-9c2d-000000000002"
KNOWN_EMAIL = "known.person@example.com"
ERASED_EMAIL = "erased.person@example.com"


@dataclass
class Running:
    service: Service
    stub: consent_service_pb2_grpc.ConsentServiceStub


# -- the service, once per store backend ---------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def consent(
    module_store_url: str,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Running]:
    data_dir = tmp_path_factory.mktemp("consent-data")
    config = ServiceConfig.from_env(
        "consent",
        {
            "CLOSEDLOOP_DATA_DIR": str(data_dir),
            "CLOSEDLOOP_NATS_URL": nats_server.url,
            "CLOSEDLOOP_CONSENT_GRPC_PORT": "0",
            "CLOSEDLOOP_CONSENT_STORE_URL": module_store_url,
        },
    )
    service = await bootstrap(config)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.server.port}"
        ) as channel:
            stub = consent_service_pb2_grpc.ConsentServiceStub(channel)
            running = Running(service=service, stub=stub)
            await stub.GrantConsent(_grant(subject_id=KNOWN_LEAD_ID), timeout=10)
            await stub.GrantConsent(_grant(subject_id=ERASED_LEAD_ID), timeout=10)
            await stub.GrantConsent(_grant(subject_id=ERASED_EMAIL), timeout=10)
            for subject_id in (ERASED_LEAD_ID, ERASED_EMAIL):
                erased = await stub.EraseSubject(
                    pb.EraseSubjectRequest(subject_id=subject_id), timeout=10
                )
                assert erased.created
            # The bases the bad cases vary are valid, and the probe sees their events:
            for method, base in [
                ("GrantConsent", _grant()),
                ("GrantConsent", _grant(subject_id=KNOWN_LEAD_ID, email=KNOWN_EMAIL)),
                ("GrantConsent", _grant(subject_id=ERASED_EMAIL)),
                ("WithdrawConsent", _withdraw()),
                ("WithdrawConsent", _withdraw(purpose=OBJECTION, channel=0)),
                ("RecordGlobalPrivacyControl", _gpc()),
                ("SetPreferences", _preferences()),
            ]:
                before = await _max_notification_id(service)
                await getattr(stub, method)(base, timeout=10)
                assert await _max_notification_id(service) > before, method
            yield running
    finally:
        await service.stop(grace=1.0)


# -- the cases -----------------------------------------------------------------------

OBJECTION = types_pb2.PURPOSE_DIRECT_MARKETING_OBJECTION


def _ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _evidence(**fields: str) -> types_pb2.Evidence:
    evidence: dict[str, str] = {
        "notice_version": "privacy-2024-02",
        "notice_hash": "sha256:9f2c",
        "capture_method": "checkbox newsletter-footer",
        "request_origin": "203.0.113.7",
    }
    evidence.update(fields)
    return types_pb2.Evidence(**evidence)


def _grant(**fields: Any) -> pb.GrantConsentRequest:
    """A valid grant for an email subject, with `fields` changed."""
    request: dict[str, Any] = {
        "subject_id": KNOWN_EMAIL,
        "purpose": types_pb2.PURPOSE_NEWSLETTER,
        "channel": types_pb2.CHANNEL_EMAIL,
        "source_system": types_pb2.SOURCE_SYSTEM_WEB_FORM,
        "method": types_pb2.METHOD_FORM,
        "evidence": _evidence(),
    }
    request.update(fields)
    return pb.GrantConsentRequest(**request)


def _withdraw(**fields: Any) -> pb.WithdrawConsentRequest:
    request: dict[str, Any] = {
        "subject_id": KNOWN_LEAD_ID,
        "purpose": types_pb2.PURPOSE_MARKETING_EMAIL,
        "channel": types_pb2.CHANNEL_EMAIL,
        "source_system": types_pb2.SOURCE_SYSTEM_EMAIL_TOOL,
        "method": types_pb2.METHOD_UNSUBSCRIBE_LINK,
        "evidence": _evidence(),
    }
    request.update(fields)
    return pb.WithdrawConsentRequest(**request)


def _gpc(**fields: Any) -> pb.RecordGlobalPrivacyControlRequest:
    request: dict[str, Any] = {
        "subject_id": KNOWN_EMAIL,
        "evidence": _evidence(capture_method="Sec-GPC: 1"),
    }
    request.update(fields)
    return pb.RecordGlobalPrivacyControlRequest(**request)


def _channel_preferences(**fields: Any) -> types_pb2.ChannelPreferences:
    preferences: dict[str, Any] = {
        "channel": types_pb2.CHANNEL_EMAIL,
        "topics": ["product", "events"],
        "frequency": types_pb2.FREQUENCY_WEEKLY,
    }
    preferences.update(fields)
    return types_pb2.ChannelPreferences(**preferences)


def _preferences(**fields: Any) -> pb.SetPreferencesRequest:
    request: dict[str, Any] = {
        "subject_id": KNOWN_LEAD_ID,
        "preferences": [_channel_preferences()],
        "source_system": types_pb2.SOURCE_SYSTEM_PREFERENCE_CENTRE,
    }
    request.update(fields)
    return pb.SetPreferencesRequest(**request)


def _check(**fields: Any) -> pb.CheckConsentRequest:
    request: dict[str, Any] = {
        "subject_id": KNOWN_LEAD_ID,
        "purpose": types_pb2.PURPOSE_NEWSLETTER,
        "channel": types_pb2.CHANNEL_EMAIL,
    }
    request.update(fields)
    return pb.CheckConsentRequest(**request)


@dataclass(frozen=True)
class Case:
    method: str
    request: Callable[[], Any]
    code: grpc.StatusCode
    #: INVALID_ARGUMENT: the offending field; otherwise a phrase the message must hold.
    field: str = ""
    says: str = ""


FUTURE = datetime.now(UTC) + timedelta(days=2)
LONG_AGO = datetime(1980, 6, 1, tzinfo=UTC)


def _subject_cases(method: str, build: Callable[..., Any], tag: str) -> list[Any]:
    """The subject checks every RPC shares."""
    return [
        pytest.param(
            Case(method, lambda: build(subject_id=""), INVALID, "subject_id"),
            id=f"{tag}-empty-subject",
        ),
        pytest.param(
            Case(method, lambda: build(subject_id="lead-42"), INVALID, "subject_id"),
            id=f"{tag}-subject-neither-uuid-nor-email",
        ),
        pytest.param(
            Case(method, lambda: build(subject_id="ann@"), INVALID, "subject_id"),
            id=f"{tag}-subject-malformed-email",
        ),
        pytest.param(
            Case(
                method,
                lambda: build(subject_id="a" * 250 + "@example.com"),
                INVALID,
                "subject_id",
            ),
            id=f"{tag}-subject-too-long",
        ),
        pytest.param(
            Case(
                method,
                lambda: build(subject_id=KNOWN_LEAD_ID, email="not-an-email"),
                INVALID,
                "email",
            ),
            id=f"{tag}-lead-with-malformed-email",
        ),
        pytest.param(
            Case(
                method,
                lambda: build(subject_id=KNOWN_EMAIL, email="other@example.com"),
                INVALID,
                "email",
            ),
            id=f"{tag}-email-differs-from-email-subject",
        ),
    ]


def _time_cases(method: str, build: Callable[..., Any], tag: str) -> list[Any]:
    return [
        pytest.param(
            Case(
                method, lambda: build(occurred_at=_ts(FUTURE)), INVALID, "occurred_at"
            ),
            id=f"{tag}-occurred-at-future",
        ),
        pytest.param(
            Case(
                method, lambda: build(occurred_at=_ts(LONG_AGO)), INVALID, "occurred_at"
            ),
            id=f"{tag}-occurred-at-1980",
        ),
        pytest.param(
            Case(
                method,
                lambda: build(occurred_at=Timestamp(seconds=10**12)),
                INVALID,
                "occurred_at",
            ),
            id=f"{tag}-occurred-at-out-of-range",
        ),
    ]


def _evidence_cases(method: str, build: Callable[..., Any], tag: str) -> list[Any]:
    return [
        pytest.param(
            Case(
                method,
                lambda: build(evidence=_evidence(request_origin="o" * 2001)),
                INVALID,
                "evidence.request_origin",
            ),
            id=f"{tag}-request-origin-too-long",
        ),
        pytest.param(
            Case(
                method,
                lambda: build(evidence=_evidence(notice_version="v1\x00\x07")),
                INVALID,
                "evidence.notice_version",
            ),
            id=f"{tag}-notice-version-control-characters",
        ),
        pytest.param(
            Case(
                method,
                lambda: build(evidence=_evidence(detail="d" * 2001)),
                INVALID,
                "evidence.detail",
            ),
            id=f"{tag}-evidence-detail-too-long",
        ),
        pytest.param(
            Case(
                method,
                lambda: build(idempotency_key="k" * 201),
                INVALID,
                "idempotency_key",
            ),
            id=f"{tag}-idempotency-key-too-long",
        ),
    ]


CASES = [
    # GrantConsent
    *_subject_cases("GrantConsent", _grant, "grant"),
    *_time_cases("GrantConsent", _grant, "grant"),
    *_evidence_cases("GrantConsent", _grant, "grant"),
    pytest.param(
        Case("GrantConsent", lambda: _grant(purpose=0), INVALID, "purpose"),
        id="grant-purpose-unspecified",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(purpose=99), INVALID, "purpose"),
        id="grant-purpose-unknown",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(purpose=types_pb2.PURPOSE_ALL),
            INVALID,
            "purpose",
        ),
        id="grant-purpose-all",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(purpose=OBJECTION), INVALID, "purpose"),
        id="grant-purpose-objection",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(channel=0), INVALID, "channel"),
        id="grant-channel-unspecified",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(channel=42), INVALID, "channel"),
        id="grant-channel-unknown",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(source_system=0), INVALID, "source_system"),
        id="grant-source-system-unspecified",
    ),
    pytest.param(
        Case(
            "GrantConsent", lambda: _grant(source_system=77), INVALID, "source_system"
        ),
        id="grant-source-system-unknown",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(source_system=types_pb2.SOURCE_SYSTEM_GPC),
            INVALID,
            "source_system",
        ),
        id="grant-source-system-gpc",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(legal_basis=9), INVALID, "legal_basis"),
        id="grant-legal-basis-unknown",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(method=0), INVALID, "method"),
        id="grant-method-unspecified",
    ),
    pytest.param(
        Case("GrantConsent", lambda: _grant(method=55), INVALID, "method"),
        id="grant-method-unknown",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(method=types_pb2.METHOD_UNSUBSCRIBE_LINK),
            INVALID,
            "method",
        ),
        id="grant-method-unsubscribe-link",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(method=types_pb2.METHOD_GPC),
            INVALID,
            "method",
        ),
        id="grant-method-gpc",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(
                subject_id=ERASED_EMAIL, source_system=types_pb2.SOURCE_SYSTEM_IMPORT
            ),
            PRECONDITION,
            says="suppressed: this person asked to be erased",
        ),
        id="grant-import-to-erased-email",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(
                subject_id=ERASED_EMAIL.upper(), method=types_pb2.METHOD_IMPORT
            ),
            PRECONDITION,
            says="suppressed",
        ),
        id="grant-import-method-to-erased-email",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(
                subject_id=KNOWN_LEAD_ID,
                email=ERASED_EMAIL,
                source_system=types_pb2.SOURCE_SYSTEM_IMPORT,
            ),
            PRECONDITION,
            says="suppressed",
        ),
        id="grant-import-to-lead-with-erased-email",
    ),
    pytest.param(
        Case(
            "GrantConsent",
            lambda: _grant(subject_id=ERASED_LEAD_ID),
            PRECONDITION,
            says="was erased",
        ),
        id="grant-erased-lead",
    ),
    # WithdrawConsent
    *_subject_cases("WithdrawConsent", _withdraw, "withdraw"),
    *_time_cases("WithdrawConsent", _withdraw, "withdraw"),
    *_evidence_cases("WithdrawConsent", _withdraw, "withdraw"),
    pytest.param(
        Case("WithdrawConsent", lambda: _withdraw(purpose=0), INVALID, "purpose"),
        id="withdraw-purpose-unspecified",
    ),
    pytest.param(
        Case("WithdrawConsent", lambda: _withdraw(purpose=102), INVALID, "purpose"),
        id="withdraw-purpose-unknown",
    ),
    pytest.param(
        Case("WithdrawConsent", lambda: _withdraw(channel=7), INVALID, "channel"),
        id="withdraw-channel-unknown",
    ),
    pytest.param(
        Case(
            "WithdrawConsent",
            lambda: _withdraw(purpose=OBJECTION),
            INVALID,
            "channel",
        ),
        id="withdraw-objection-with-channel",
    ),
    pytest.param(
        Case(
            "WithdrawConsent",
            lambda: _withdraw(source_system=0),
            INVALID,
            "source_system",
        ),
        id="withdraw-source-system-unspecified",
    ),
    pytest.param(
        Case(
            "WithdrawConsent", lambda: _withdraw(legal_basis=-1), INVALID, "legal_basis"
        ),
        id="withdraw-legal-basis-unknown",
    ),
    pytest.param(
        Case("WithdrawConsent", lambda: _withdraw(method=0), INVALID, "method"),
        id="withdraw-method-unspecified",
    ),
    pytest.param(
        Case(
            "WithdrawConsent",
            lambda: _withdraw(method=types_pb2.METHOD_DOUBLE_OPT_IN_CONFIRMED),
            INVALID,
            "method",
        ),
        id="withdraw-method-double-opt-in",
    ),
    pytest.param(
        Case(
            "WithdrawConsent",
            lambda: _withdraw(subject_id=ERASED_LEAD_ID),
            PRECONDITION,
            says="was erased",
        ),
        id="withdraw-erased-lead",
    ),
    # RecordGlobalPrivacyControl
    *_subject_cases("RecordGlobalPrivacyControl", _gpc, "gpc"),
    *_time_cases("RecordGlobalPrivacyControl", _gpc, "gpc"),
    *_evidence_cases("RecordGlobalPrivacyControl", _gpc, "gpc"),
    pytest.param(
        Case(
            "RecordGlobalPrivacyControl",
            lambda: _gpc(subject_id=ERASED_LEAD_ID),
            PRECONDITION,
            says="was erased",
        ),
        id="gpc-erased-lead",
    ),
    # SetPreferences
    *_subject_cases("SetPreferences", _preferences, "preferences"),
    *_time_cases("SetPreferences", _preferences, "preferences"),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(preferences=[]),
            INVALID,
            "preferences",
        ),
        id="preferences-none",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(preferences=[_channel_preferences(channel=0)]),
            INVALID,
            "preferences[0].channel",
        ),
        id="preferences-channel-unspecified",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(
                preferences=[
                    _channel_preferences(),
                    _channel_preferences(channel=types_pb2.CHANNEL_SMS, frequency=99),
                ]
            ),
            INVALID,
            "preferences[1].frequency",
        ),
        id="preferences-frequency-unknown",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(preferences=[_channel_preferences(frequency=0)]),
            INVALID,
            "preferences[0].frequency",
        ),
        id="preferences-frequency-unspecified",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(
                preferences=[_channel_preferences(topics=["product", " "])]
            ),
            INVALID,
            "preferences[0].topics[1]",
        ),
        id="preferences-blank-topic",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(
                preferences=[_channel_preferences(topics=[f"t{i}" for i in range(51)])]
            ),
            INVALID,
            "preferences[0].topics",
        ),
        id="preferences-51-topics",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(
                preferences=[_channel_preferences(), _channel_preferences()]
            ),
            INVALID,
            "preferences",
        ),
        id="preferences-channel-twice",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(source_system=0),
            INVALID,
            "source_system",
        ),
        id="preferences-source-system-unspecified",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(idempotency_key="k" * 201),
            INVALID,
            "idempotency_key",
        ),
        id="preferences-idempotency-key-too-long",
    ),
    pytest.param(
        Case(
            "SetPreferences",
            lambda: _preferences(subject_id=ERASED_LEAD_ID),
            PRECONDITION,
            says="was erased",
        ),
        id="preferences-erased-lead",
    ),
    # CheckConsent
    *_subject_cases("CheckConsent", _check, "check"),
    pytest.param(
        Case("CheckConsent", lambda: _check(purpose=0), INVALID, "purpose"),
        id="check-purpose-unspecified",
    ),
    pytest.param(
        Case(
            "CheckConsent",
            lambda: _check(purpose=types_pb2.PURPOSE_ALL),
            INVALID,
            "purpose",
        ),
        id="check-purpose-all",
    ),
    pytest.param(
        Case("CheckConsent", lambda: _check(purpose=OBJECTION), INVALID, "purpose"),
        id="check-purpose-objection",
    ),
    pytest.param(
        Case("CheckConsent", lambda: _check(channel=0), INVALID, "channel"),
        id="check-channel-unspecified",
    ),
    pytest.param(
        Case("CheckConsent", lambda: _check(channel=12), INVALID, "channel"),
        id="check-channel-unknown",
    ),
    pytest.param(
        Case(
            "CheckConsent", lambda: _check(at=Timestamp(seconds=10**12)), INVALID, "at"
        ),
        id="check-at-out-of-range",
    ),
    pytest.param(
        Case("CheckConsent", lambda: _check(at=_ts(LONG_AGO)), INVALID, "at"),
        id="check-at-1980",
    ),
    pytest.param(
        Case(
            "CheckConsent",
            lambda: _check(believed_at=_ts(FUTURE)),
            INVALID,
            "believed_at",
        ),
        id="check-believed-at-future",
    ),
    # GetConsentHistory
    *_subject_cases(
        "GetConsentHistory",
        lambda **f: pb.GetConsentHistoryRequest(**{"subject_id": KNOWN_LEAD_ID, **f}),
        "history",
    ),
    pytest.param(
        Case(
            "GetConsentHistory",
            lambda: pb.GetConsentHistoryRequest(subject_id=KNOWN_LEAD_ID, page_size=-1),
            INVALID,
            "page_size",
        ),
        id="history-negative-page-size",
    ),
    pytest.param(
        Case(
            "GetConsentHistory",
            lambda: pb.GetConsentHistoryRequest(
                subject_id=KNOWN_LEAD_ID,
                page_token="bm90IGEgdG9rZW4",  # noqa: S106 - a page token
            ),
            INVALID,
            "page_token",
        ),
        id="history-junk-page-token",
    ),
    # EraseSubject
    *_subject_cases(
        "EraseSubject",
        lambda **f: pb.EraseSubjectRequest(**{"subject_id": KNOWN_LEAD_ID, **f}),
        "erase",
    ),
    *_time_cases(
        "EraseSubject",
        lambda **f: pb.EraseSubjectRequest(**{"subject_id": KNOWN_LEAD_ID, **f}),
        "erase",
    ),
]


# -- the shared check ----------------------------------------------------------------


async def _max_notification_id(service: Service) -> int:
    return await asyncio.to_thread(service.store.recorder.max_notification_id) or 0


async def _refused(running: Running, case: Case) -> None:
    await assert_refused(
        running.service.store,
        running.stub,
        case.method,
        case.request(),
        code=case.code,
        field=case.field,
        says=case.says,
    )


@pytest.mark.parametrize("case", CASES)
async def test_bad_request_is_refused_and_records_nothing(
    consent: Running, case: Case
) -> None:
    await _refused(consent, case)


@pytest.mark.parametrize(
    ("method", "request_", "every"),
    [
        pytest.param(
            "GrantConsent",
            _grant(subject_id="", purpose=0, evidence=_evidence(detail="x" * 2001)),
            ("subject_id", "purpose", "evidence.detail"),
            id="grant",
        ),
        pytest.param(
            "SetPreferences",
            _preferences(
                preferences=[
                    _channel_preferences(channel=0, topics=["news", ""], frequency=0)
                ]
            ),
            (
                "preferences[0].channel",
                "preferences[0].topics[1]",
                "preferences[0].frequency",
            ),
            id="preferences",
        ),
        pytest.param(
            "CheckConsent",
            _check(subject_id="someone", purpose=0, at=_ts(LONG_AGO)),
            ("subject_id", "purpose", "at"),
            id="check",
        ),
    ],
)
async def test_every_bad_field_of_a_request_is_listed(
    consent: Running, method: str, request_: Any, every: tuple[str, ...]
) -> None:
    """One refusal lists each bad field; the message stays the first one's."""
    await assert_refused(
        consent.service.store,
        consent.stub,
        method,
        request_,
        code=INVALID,
        field=every[0],
        every=every,
    )


async def test_refused_subjects_are_unchanged(consent: Running) -> None:
    """The records the bad calls aimed at are as the setup left them."""
    stub = consent.stub
    known = await stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(subject_id=KNOWN_LEAD_ID, email=KNOWN_EMAIL)
    )
    assert len(known.subject_aggregate_ids) == 2
    # the lead's two grants, its unsubscribe and its objection; the email's grant
    # and the two withdrawals of its Global Privacy Control signal
    assert sorted(types_pb2.ChangeKind.Name(c.kind) for c in known.changes) == [
        "CHANGE_KIND_GRANTED",
        "CHANGE_KIND_GRANTED",
        "CHANGE_KIND_GRANTED",
        "CHANGE_KIND_WITHDRAWN",
        "CHANGE_KIND_WITHDRAWN",
        "CHANGE_KIND_WITHDRAWN",
        "CHANGE_KIND_WITHDRAWN",
    ]
    assert len(known.preference_changes) == 1
    assert list(known.erasures) == []

    erased = await stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(subject_id=ERASED_LEAD_ID)
    )
    assert len(erased.changes) == 1
    assert len(erased.erasures) == 1
    erased_email = await stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(subject_id=ERASED_EMAIL)
    )
    # the setup's grant, and the form grant the bases sent after the erasure
    assert len(erased_email.changes) == 2
    assert {c.email for c in erased_email.changes} == {""}
    assert erased_email.erasures[0].email_digest

    answer = await stub.CheckConsent(
        _check(subject_id=ERASED_LEAD_ID, purpose=types_pb2.PURPOSE_NEWSLETTER)
    )
    assert answer.allowed is False
    assert answer.state == types_pb2.CONSENT_STATE_OPTED_OUT
    assert answer.decided_by.kind == types_pb2.CHANGE_KIND_ERASED


async def test_the_history_comes_a_page_at_a_time(consent: Running) -> None:
    """Pages of any size add up to the whole history, each list in its order."""
    whole = await consent.stub.GetConsentHistory(
        pb.GetConsentHistoryRequest(subject_id=KNOWN_LEAD_ID, email=KNOWN_EMAIL)
    )
    entries = len(whole.changes) + len(whole.preference_changes) + len(whole.erasures)
    assert entries == 8
    assert whole.next_page_token == ""

    async def history(page_size: int, token: str) -> pb.GetConsentHistoryResponse:
        page: pb.GetConsentHistoryResponse = await consent.stub.GetConsentHistory(
            pb.GetConsentHistoryRequest(
                subject_id=KNOWN_LEAD_ID,
                email=KNOWN_EMAIL,
                page_size=page_size,
                page_token=token,
            )
        )
        return page

    for page_size in (1, 3):
        pages = await pages_of(history, page_size)
        assert len(pages) == -(-entries // page_size)
        for page in pages:
            assert page.subject_aggregate_ids == whole.subject_aggregate_ids
            assert len(page.changes) + len(page.preference_changes) <= page_size
        assert [c for p in pages for c in p.changes] == list(whole.changes)
        assert [c for p in pages for c in p.preference_changes] == list(
            whole.preference_changes
        )
