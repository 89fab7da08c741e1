"""The consent application: one function per command, run in group-committed batches."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from eventsourcing.application import AggregateNotFoundError

from closedloop.eventstore.personal import PersonalDataApplication
from closedloop.identity import email_digest
from services.consent.decisions import Decision, all_changes, decide, preferences_at
from services.consent.domain import (
    ChangeRequest,
    ChannelPreferences,
    Consent,
    ConsentChange,
    Evidence,
    PreferenceChange,
    email_subject_id,
    history_order,
    lead_subject_id,
)
from services.consent.vocabulary import LegalBasis

if TYPE_CHECKING:
    from collections.abc import Callable

    from closedloop.eventstore.metadata import EventMeta
    from closedloop.eventstore.unit_of_work import CommandExecutor, UnitOfWork

R = TypeVar("R")

#: The fields of a change that may hold personal data: encrypted with the key of the
#: subject's record, unreadable once it is erased.
_PERSONAL_CHANGE_FIELDS = ("email", "request_origin", "evidence_detail")


class ConsentStore(PersonalDataApplication):
    """The consent context's event store and repository (eventsourcing)."""

    name = "Consents"
    #: Personal data, encrypted with the subject record's own key (crypto-shredding).
    personal_data = {  # noqa: RUF012
        Consent.Granted: _PERSONAL_CHANGE_FIELDS,
        Consent.Withdrawn: _PERSONAL_CHANGE_FIELDS,
        Consent.PreferencesChanged: ("email",),
    }


# -- commands and queries ------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """Who a request is about: a lead (with its email, optionally) or an email alone.

    The email is normalised (trimmed, lower case).
    """

    lead_id: uuid.UUID | None = None
    email: str = ""


@dataclass(frozen=True)
class ConsentCommand:
    subject: Subject
    purpose: str
    channel: str
    source_system: str
    method: str
    occurred_at: datetime
    legal_basis: str = LegalBasis.CONSENT
    evidence: Evidence = field(default_factory=Evidence)
    idempotency_key: str = ""


@dataclass(frozen=True)
class GrantConsent(ConsentCommand):
    pass


@dataclass(frozen=True)
class WithdrawConsent(ConsentCommand):
    pass


@dataclass(frozen=True)
class RecordGlobalPrivacyControl:
    subject: Subject
    occurred_at: datetime
    evidence: Evidence = field(default_factory=Evidence)
    idempotency_key: str = ""


@dataclass(frozen=True)
class SetPreferences:
    subject: Subject
    preferences: tuple[ChannelPreferences, ...]
    source_system: str
    occurred_at: datetime
    idempotency_key: str = ""


@dataclass(frozen=True)
class EraseSubject:
    subject: Subject
    occurred_at: datetime


@dataclass(frozen=True)
class CheckConsent:
    subject: Subject
    purpose: str
    channel: str
    at: datetime
    believed_at: datetime | None = None


@dataclass(frozen=True)
class ChangeResult:
    change_ids: tuple[uuid.UUID, ...]
    #: False when the idempotency key had been seen: nothing new was recorded.
    created: bool
    subject_aggregate_id: uuid.UUID

    @property
    def change_id(self) -> uuid.UUID:
        return self.change_ids[0]


@dataclass(frozen=True)
class ErasureResult:
    subject_aggregate_ids: tuple[uuid.UUID, ...]
    suppressed_email_digests: tuple[str, ...]
    #: False when every record was erased already and had not changed since.
    created: bool


@dataclass(frozen=True)
class ConsentAnswer:
    decision: Decision
    preferences: ChannelPreferences | None


@dataclass(frozen=True)
class History:
    subject_aggregate_ids: tuple[uuid.UUID, ...]
    changes: tuple[ConsentChange, ...]
    preference_changes: tuple[PreferenceChange, ...]
    erasures: tuple[ConsentChange, ...]


class Consents:
    """Consent and preferences per subject: changes, answers, history and erasure."""

    def __init__(
        self, store: ConsentStore, executor: CommandExecutor, *, secret_key: bytes
    ) -> None:
        self.store = store
        self.executor = executor
        self._secret_key = secret_key

    def email_digest(self, email: str) -> str:
        """A keyed hash of the address, equal to the one the lead service computes."""
        return email_digest(self._secret_key, email)

    def record_ids(self, subject: Subject) -> tuple[uuid.UUID, ...]:
        """The subject's consent record, then (for a lead with an email) the email's."""
        if subject.lead_id is None:
            return (email_subject_id(self.email_digest(subject.email)),)
        if not subject.email:
            return (lead_subject_id(subject.lead_id),)
        return (
            lead_subject_id(subject.lead_id),
            email_subject_id(self.email_digest(subject.email)),
        )

    async def _run(self, fn: Callable[[UnitOfWork], R], meta: EventMeta) -> R:
        return await self.executor.execute(fn, meta)

    # -- commands ---------------------------------------------------------------------

    async def grant_consent(self, cmd: GrantConsent, meta: EventMeta) -> ChangeResult:
        def run(uow: UnitOfWork) -> ChangeResult:
            request = self._change_request(cmd)
            linked = [
                r
                for r in (uow.get(i, Consent) for i in self.record_ids(cmd.subject)[1:])
                if r is not None
            ]
            return self._change(
                uow,
                cmd.subject,
                lambda record: record.grant(request, linked=linked),
            )

        return await self._run(run, meta)

    async def withdraw_consent(
        self, cmd: WithdrawConsent, meta: EventMeta
    ) -> ChangeResult:
        def run(uow: UnitOfWork) -> ChangeResult:
            request = self._change_request(cmd)
            return self._change(uow, cmd.subject, lambda r: r.withdraw(request))

        return await self._run(run, meta)

    async def record_global_privacy_control(
        self, cmd: RecordGlobalPrivacyControl, meta: EventMeta
    ) -> ChangeResult:
        def run(uow: UnitOfWork) -> ChangeResult:
            return self._change(
                uow,
                cmd.subject,
                lambda record: record.record_global_privacy_control(
                    cmd.occurred_at,
                    evidence=cmd.evidence,
                    email=cmd.subject.email,
                    email_digest=self._digest_of(cmd.subject),
                    idempotency_key=cmd.idempotency_key,
                ),
            )

        return await self._run(run, meta)

    async def set_preferences(
        self, cmd: SetPreferences, meta: EventMeta
    ) -> ChangeResult:
        def run(uow: UnitOfWork) -> ChangeResult:
            return self._change(
                uow,
                cmd.subject,
                lambda record: record.set_preferences(
                    cmd.preferences,
                    cmd.source_system,
                    cmd.occurred_at,
                    email=cmd.subject.email,
                    email_digest=self._digest_of(cmd.subject),
                    idempotency_key=cmd.idempotency_key,
                ),
            )

        return await self._run(run, meta)

    async def erase_subject(self, cmd: EraseSubject, meta: EventMeta) -> ErasureResult:
        """Records the tombstones, then shreds the keys (again, if a retry)."""
        result = await self._run(lambda uow: self._erase(cmd, uow), meta)
        await self.executor.query(
            lambda: self.store.erase_subjects(result.subject_aggregate_ids)
        )
        return result

    def _erase(self, cmd: EraseSubject, uow: UnitOfWork) -> ErasureResult:
        record, new = self._record(uow, cmd.subject)
        if record.lead_id is None:
            digests = [record.email_digest]
        else:
            given = [self.email_digest(cmd.subject.email)] if cmd.subject.email else []
            digests = given + [d for d in record.email_digests if d not in given]
        created = record.erase(
            cmd.occurred_at, email_digest=digests[0] if digests else ""
        )
        if new:
            uow.add(record)
        erased = [record.id]
        if record.lead_id is not None:
            for digest in digests:
                email_record = uow.get(email_subject_id(digest), Consent)
                if email_record is None:
                    # The suppression entry must exist even without an email history.
                    email_record = Consent.for_email(digest)
                    uow.add(email_record)
                created = email_record.erase(cmd.occurred_at) or created
                erased.append(email_record.id)
        return ErasureResult(
            subject_aggregate_ids=tuple(erased),
            suppressed_email_digests=tuple(digests),
            created=created,
        )

    # -- queries ----------------------------------------------------------------------

    def check_consent(self, query: CheckConsent) -> ConsentAnswer:
        records = self._records(query.subject)
        decision = decide(
            all_changes(records),
            query.purpose,
            query.channel,
            query.at,
            query.believed_at,
        )
        preferences = preferences_at(
            [p for r in records for p in r.preference_changes],
            query.channel,
            query.at,
            query.believed_at,
        )
        return ConsentAnswer(decision=decision, preferences=preferences)

    def get_consent_history(self, subject: Subject) -> History:
        records = self._records(subject)
        return History(
            subject_aggregate_ids=self.record_ids(subject),
            changes=tuple(
                sorted((c for r in records for c in r.changes), key=history_order)
            ),
            preference_changes=tuple(
                sorted(
                    (p for r in records for p in r.preference_changes),
                    key=history_order,
                )
            ),
            erasures=tuple(
                sorted((e for r in records for e in r.erasures), key=history_order)
            ),
        )

    # -- helpers ----------------------------------------------------------------------

    def _digest_of(self, subject: Subject) -> str:
        return self.email_digest(subject.email) if subject.email else ""

    def _change_request(self, cmd: ConsentCommand) -> ChangeRequest:
        return ChangeRequest(
            purpose=cmd.purpose,
            channel=cmd.channel,
            source_system=cmd.source_system,
            method=cmd.method,
            occurred_at=cmd.occurred_at,
            legal_basis=cmd.legal_basis,
            evidence=cmd.evidence,
            email=cmd.subject.email,
            email_digest=self._digest_of(cmd.subject),
            idempotency_key=cmd.idempotency_key,
        )

    def _record(self, uow: UnitOfWork, subject: Subject) -> tuple[Consent, bool]:
        """The record as this transaction sees it, or a new one; and whether new."""
        found = uow.get(self.record_ids(subject)[0], Consent)
        if found is not None:
            return found, False
        if subject.lead_id is not None:
            return Consent.for_lead(subject.lead_id), True
        return Consent.for_email(self.email_digest(subject.email)), True

    def _change(
        self,
        uow: UnitOfWork,
        subject: Subject,
        act: Callable[[Consent], tuple[Any, bool]],
    ) -> ChangeResult:
        record, new = self._record(uow, subject)
        recorded, created = act(record)
        if new:
            uow.add(record)  # only once it holds a change: a refused one leaves nothing
        change_ids = recorded if isinstance(recorded, tuple) else (recorded,)
        return ChangeResult(change_ids, created, record.id)

    def _records(self, subject: Subject) -> list[Consent]:
        records = []
        for record_id in self.record_ids(subject):
            try:
                record: object = self.store.repository.get(record_id)
            except AggregateNotFoundError:
                continue
            if isinstance(record, Consent):
                records.append(record)
        return records
