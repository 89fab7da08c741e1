"""The ConsentService servicer: validate the request, run the command, answer."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol, TypeVar

from closedloop.consent.v1 import consent_service_pb2 as pb
from closedloop.consent.v1 import consent_service_pb2_grpc, types_pb2
from closedloop.grpckit import paging, request_meta
from closedloop.grpckit import validation as check
from closedloop.identity import normalize_email
from closedloop.protobuf import timestamp
from services.consent.application import (
    CheckConsent,
    ConsentCommand,
    Consents,
    EraseSubject,
    GrantConsent,
    History,
    RecordGlobalPrivacyControl,
    SetPreferences,
    Subject,
    WithdrawConsent,
)
from services.consent.domain import (
    ChannelPreferences,
    ConsentChange,
    Evidence,
    PreferenceChange,
    history_order,
)
from services.consent.vocabulary import SCOPES, LegalBasis
from services.consent.wire import (
    CHANNEL,
    FREQUENCY,
    LEGAL_BASIS,
    METHOD,
    PURPOSE,
    SOURCE_SYSTEM,
    STATE,
    change_message,
    name,
    number,
    preference_change_message,
    preferences_message,
)

if TYPE_CHECKING:
    import grpc
    from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ConsentService"].full_name
C = TypeVar("C", bound=ConsentCommand)

#: At most this many topics per channel in SetPreferences.
MAX_TOPICS = 50


class _AboutSubject(Protocol):
    @property
    def subject_id(self) -> str: ...
    @property
    def email(self) -> str: ...


class ConsentServicer(consent_service_pb2_grpc.ConsentServiceServicer):
    """Turns ConsentService calls into commands; domain errors map to status codes."""

    def __init__(self, consents: Consents) -> None:
        self.consents = consents

    async def GrantConsent(  # noqa: N802 - gRPC method names
        self, request: pb.GrantConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.GrantConsentResponse:
        with check.every_violation():
            cmd = _change_command(GrantConsent, request)
        result = await self.consents.grant_consent(cmd, request_meta(context))
        return pb.GrantConsentResponse(
            change_id=str(result.change_id),
            created=result.created,
            subject_aggregate_id=str(result.subject_aggregate_id),
        )

    async def WithdrawConsent(  # noqa: N802
        self, request: pb.WithdrawConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.WithdrawConsentResponse:
        with check.every_violation():
            cmd = _change_command(WithdrawConsent, request)
        result = await self.consents.withdraw_consent(cmd, request_meta(context))
        return pb.WithdrawConsentResponse(
            change_id=str(result.change_id),
            created=result.created,
            subject_aggregate_id=str(result.subject_aggregate_id),
        )

    async def RecordGlobalPrivacyControl(  # noqa: N802
        self,
        request: pb.RecordGlobalPrivacyControlRequest,
        context: grpc.aio.ServicerContext,
    ) -> pb.RecordGlobalPrivacyControlResponse:
        with check.every_violation():
            cmd = RecordGlobalPrivacyControl(
                subject=_subject(request),
                evidence=_evidence(request.evidence),
                occurred_at=check.business_time(request, "occurred_at"),
                idempotency_key=_idempotency_key(request.idempotency_key),
            )
        result = await self.consents.record_global_privacy_control(
            cmd, request_meta(context)
        )
        return pb.RecordGlobalPrivacyControlResponse(
            change_ids=[str(i) for i in result.change_ids],
            created=result.created,
            subject_aggregate_id=str(result.subject_aggregate_id),
        )

    async def SetPreferences(  # noqa: N802
        self, request: pb.SetPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetPreferencesResponse:
        with check.every_violation():
            subject = _subject(request)
            if not request.preferences:
                check.refuse("preferences", "name at least one channel")
            preferences = tuple(
                _preferences(f"preferences[{i}]", p)
                for i, p in enumerate(request.preferences)
            )
            cmd = SetPreferences(
                subject=subject,
                preferences=preferences,
                source_system=_enum(
                    "source_system", request.source_system, SOURCE_SYSTEM, required=True
                ),
                occurred_at=check.business_time(request, "occurred_at"),
                idempotency_key=_idempotency_key(request.idempotency_key),
            )
        result = await self.consents.set_preferences(cmd, request_meta(context))
        return pb.SetPreferencesResponse(
            change_id=str(result.change_id),
            created=result.created,
            subject_aggregate_id=str(result.subject_aggregate_id),
        )

    async def CheckConsent(  # noqa: N802
        self, request: pb.CheckConsentRequest, context: grpc.aio.ServicerContext
    ) -> pb.CheckConsentResponse:
        with check.every_violation():
            subject = _subject(request)
            purpose = _enum("purpose", request.purpose, PURPOSE, required=True)
            if purpose in SCOPES:
                check.refuse("purpose", "ask about one specific purpose")
            channel = _enum("channel", request.channel, CHANNEL, required=True)
            believed_at = (
                check.occurred_at("believed_at", request.believed_at, has_value=True)
                if request.HasField("believed_at")
                else None
            )
            if request.HasField("at"):
                at = check.occurred_at("at", request.at, has_value=True)
            else:
                at = believed_at or check.occurred_at("at", request.at, has_value=False)
            query = CheckConsent(
                subject=subject,
                purpose=purpose,
                channel=channel,
                at=at,
                believed_at=believed_at,
            )
        answer = await self.consents.executor.query(
            lambda: self.consents.check_consent(query)
        )
        decision = answer.decision
        response = pb.CheckConsentResponse(
            allowed=decision.allowed,
            state=number(STATE, decision.state),
            reason=decision.reason,
            at=timestamp(decision.at),
        )
        if decision.decided_by is not None:
            response.decided_by.CopyFrom(change_message(decision.decided_by))
        if decision.believed_at is not None:
            response.believed_at.CopyFrom(timestamp(decision.believed_at))
        if answer.preferences is not None:
            response.preferences.CopyFrom(preferences_message(answer.preferences))
        return response

    async def GetConsentHistory(  # noqa: N802
        self, request: pb.GetConsentHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetConsentHistoryResponse:
        with check.every_violation():
            subject = _subject(request)
            page = paging.page_request(request)
        history = await self.consents.executor.query(
            lambda: self.consents.get_consent_history(subject)
        )
        response = pb.GetConsentHistoryResponse(
            subject_aggregate_ids=[str(i) for i in history.subject_aggregate_ids]
        )
        entries = page.of(_history_entries(history))
        for field, entry in entries.items:
            getattr(response, field).append(
                preference_change_message(entry)
                if isinstance(entry, PreferenceChange)
                else change_message(entry)
            )
        response.next_page_token = entries.next_page_token
        return response

    async def EraseSubject(  # noqa: N802
        self, request: pb.EraseSubjectRequest, context: grpc.aio.ServicerContext
    ) -> pb.EraseSubjectResponse:
        with check.every_violation():
            cmd = EraseSubject(
                subject=_subject(request),
                occurred_at=check.business_time(request, "occurred_at"),
            )
        result = await self.consents.erase_subject(cmd, request_meta(context))
        return pb.EraseSubjectResponse(
            subject_aggregate_ids=[str(i) for i in result.subject_aggregate_ids],
            suppressed_email_digests=result.suppressed_email_digests,
            created=result.created,
        )


# -- request fields ----------------------------------------------------------------


def _subject(request: _AboutSubject) -> Subject:
    """A lead id (UUID), or an email for a person who is not a lead yet."""
    raw = check.text("subject_id", request.subject_id, required=True)
    if "@" in raw:
        email = normalize_email(check.email("subject_id", raw))
        other = check.email("email", request.email, required=False)
        if other and normalize_email(other) != email:
            check.refuse(
                "email", "differs from the subject; give an email with a lead subject"
            )
        return Subject(email=email)
    try:
        lead_id = uuid.UUID(raw)
    except ValueError:
        check.refuse("subject_id", "is neither a lead id (UUID) nor an email address")
        lead_id = check.NIL_ID
    email = check.email("email", request.email, required=False)
    return Subject(lead_id=lead_id, email=normalize_email(email) if email else "")


def _history_entries(
    history: History,
) -> list[tuple[str, ConsentChange | PreferenceChange]]:
    """The whole history as the one sequence pages cut, in history order.

    Each entry comes with the name of the response's list it goes into.
    """
    entries: list[tuple[str, ConsentChange | PreferenceChange]] = [
        *(("changes", c) for c in history.changes),
        *(("preference_changes", p) for p in history.preference_changes),
        *(("erasures", e) for e in history.erasures),
    ]
    entries.sort(key=lambda entry: history_order(entry[1]))
    return entries


def _enum(
    field: str,
    value: int,
    enum: tuple[EnumTypeWrapper, str],
    *,
    required: bool = False,
) -> str:
    return name(enum, check.enum_value(field, value, enum[0], required=required))


def _evidence(evidence: types_pb2.Evidence) -> Evidence:
    return Evidence(
        notice_version=check.text("evidence.notice_version", evidence.notice_version),
        notice_hash=check.text("evidence.notice_hash", evidence.notice_hash),
        capture_method=check.text("evidence.capture_method", evidence.capture_method),
        request_origin=check.text(
            "evidence.request_origin",
            evidence.request_origin,
            max_length=check.MAX_TEXT,
        ),
        detail=check.text(
            "evidence.detail", evidence.detail, max_length=check.MAX_TEXT
        ),
    )


def _idempotency_key(value: str) -> str:
    return check.text("idempotency_key", value, max_length=check.MAX_KEY)


def _change_command(
    kind: type[C], request: pb.GrantConsentRequest | pb.WithdrawConsentRequest
) -> C:
    """GrantConsent or WithdrawConsent: the same fields, checked in request order."""
    return kind(
        subject=_subject(request),
        purpose=_enum("purpose", request.purpose, PURPOSE, required=True),
        channel=_enum("channel", request.channel, CHANNEL),
        source_system=_enum(
            "source_system", request.source_system, SOURCE_SYSTEM, required=True
        ),
        legal_basis=_enum("legal_basis", request.legal_basis, LEGAL_BASIS)
        or LegalBasis.CONSENT,
        method=_enum("method", request.method, METHOD, required=True),
        evidence=_evidence(request.evidence),
        occurred_at=check.business_time(request, "occurred_at"),
        idempotency_key=_idempotency_key(request.idempotency_key),
    )


def _preferences(
    field: str, message: types_pb2.ChannelPreferences
) -> ChannelPreferences:
    channel = _enum(f"{field}.channel", message.channel, CHANNEL, required=True)
    if len(message.topics) > MAX_TOPICS:
        check.refuse(f"{field}.topics", f"has more than {MAX_TOPICS} topics")
    topics = tuple(
        check.text(f"{field}.topics[{i}]", topic, required=True)
        for i, topic in enumerate(message.topics)
    )
    frequency = _enum(f"{field}.frequency", message.frequency, FREQUENCY, required=True)
    return ChannelPreferences(channel=channel, topics=topics, frequency=frequency)
