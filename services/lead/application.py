"""The lead application: one function per command, run in group-committed batches."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from eventsourcing.application import AggregateNotFoundError

from closedloop.errors import NotFound
from closedloop.eventstore.personal import PersonalDataApplication
from closedloop.eventstore.unit_of_work import CommandExecutor, UnitOfWork
from closedloop.identity import email_digest
from services.lead.domain import (
    EmailClaim,
    Lead,
    Touchpoint,
    TouchpointOwner,
    TouchpointRequest,
    Visitor,
    check_stitchable,
    email_claim_id,
    journey_order,
    visitor_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from closedloop.eventstore.metadata import EventMeta


class LeadStore(PersonalDataApplication):
    """The lead context's event store and repository (eventsourcing)."""

    name = "Leads"
    #: Personal data, encrypted with the lead's own key (crypto-shredding).
    personal_data = {  # noqa: RUF012
        Lead.Captured: ("email", "name"),
        Lead.Qualified: ("reason",),
        Lead.Disqualified: ("detail",),
        Lead.Reopened: ("reason",),
    }


# -- commands (imperative; each is run by a function of the unit of work) --------


@dataclass(frozen=True)
class RecordTouchpoint:
    anonymous_id: str
    lead_id: uuid.UUID | None
    channel: str
    source: str
    medium: str
    campaign: str
    content: str
    interaction: str
    occurred_at: datetime
    attributes: dict[str, str] = field(default_factory=dict)
    idempotency_key: str = ""


@dataclass(frozen=True)
class CaptureLead:
    email: str
    name: str
    company: str
    source_system: str
    anonymous_id: str
    occurred_at: datetime
    idempotency_key: str = ""


@dataclass(frozen=True)
class QualifyLead:
    lead_id: uuid.UUID
    score: int
    reason: str
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class AcceptLead:
    lead_id: uuid.UUID
    owner: str
    skip_qualification: bool
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class DisqualifyLead:
    lead_id: uuid.UUID
    reason: str
    detail: str
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class ReopenLead:
    lead_id: uuid.UUID
    reason: str
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class MergeLeads:
    surviving_lead_id: uuid.UUID
    merged_lead_id: uuid.UUID
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class TouchpointResult:
    touchpoint_id: uuid.UUID
    channel: str
    created: bool


class Leads:
    """Visitors, touchpoints, identification and the lead lifecycle."""

    def __init__(
        self, store: LeadStore, executor: CommandExecutor, *, secret_key: bytes
    ) -> None:
        self.store = store
        self.executor = executor
        self._secret_key = secret_key

    def email_digest(self, email: str) -> str:
        """A keyed hash of the address, so the index never holds the address itself."""
        return email_digest(self._secret_key, email)

    async def _run(self, fn: Callable[[UnitOfWork], Any], meta: EventMeta) -> Any:
        return await self.executor.execute(fn, meta)

    # -- commands ---------------------------------------------------------------------

    async def record_touchpoint(
        self, cmd: RecordTouchpoint, meta: EventMeta
    ) -> TouchpointResult:
        result: TouchpointResult = await self._run(
            partial(self._record_touchpoint, cmd), meta
        )
        return result

    def _record_touchpoint(
        self, cmd: RecordTouchpoint, uow: UnitOfWork
    ) -> TouchpointResult:
        owner: TouchpointOwner
        if cmd.lead_id is not None:
            owner = self._active_lead(uow, cmd.lead_id, "lead_id")
        else:
            check_stitchable("anonymous_id", cmd.anonymous_id)
            found = uow.get(visitor_id(cmd.anonymous_id), Visitor)
            if found is None:
                found = Visitor(cmd.anonymous_id, cmd.occurred_at)
                uow.add(found)
            owner = found
        touchpoint_id = (
            uuid.uuid5(owner.id, f"touchpoint:{cmd.idempotency_key}")
            if cmd.idempotency_key
            else uuid.uuid4()
        )
        recorded_id, created = owner.record_touchpoint(
            TouchpointRequest(
                touchpoint_id=touchpoint_id,
                channel=cmd.channel,
                source=cmd.source,
                medium=cmd.medium,
                campaign=cmd.campaign,
                content=cmd.content,
                interaction=cmd.interaction,
                occurred_at=cmd.occurred_at,
                attributes=cmd.attributes,
                idempotency_key=cmd.idempotency_key,
            )
        )
        # Newest first: a new touchpoint is the last, a repeated key usually recent.
        channel = next(
            t.channel
            for t in reversed(owner.touchpoints)
            if t.touchpoint_id == recorded_id
        )
        return TouchpointResult(recorded_id, channel, created)

    async def capture_lead(
        self, cmd: CaptureLead, meta: EventMeta
    ) -> tuple[Lead, bool]:
        result: tuple[Lead, bool] = await self._run(
            partial(self._capture_lead, cmd), meta
        )
        return result

    def _capture_lead(self, cmd: CaptureLead, uow: UnitOfWork) -> tuple[Lead, bool]:
        if cmd.anonymous_id:
            check_stitchable("anonymous_id", cmd.anonymous_id)
        digest = self.email_digest(cmd.email)
        claim = uow.get(email_claim_id(digest), EmailClaim)
        if claim is not None and claim.lead_id is not None:
            lead = self._surviving_lead(uow, claim.lead_id)
            if cmd.anonymous_id:
                lead.identify_visitor(cmd.anonymous_id, cmd.occurred_at)
            return lead, False
        lead = Lead(
            email=cmd.email,
            name=cmd.name,
            company=cmd.company,
            source_system=cmd.source_system,
            anonymous_id=cmd.anonymous_id,
            occurred_at=cmd.occurred_at,
            idempotency_key=cmd.idempotency_key,
            email_digest=digest,
        )
        uow.add(lead)
        if claim is None:
            uow.add(EmailClaim(digest, lead.id))
        else:
            claim.reassign(lead.id)  # the earlier owner of the address was erased
        if cmd.anonymous_id:
            lead.identify_visitor(cmd.anonymous_id, cmd.occurred_at)
        return lead, True

    async def _change_lead(
        self, lead_id: uuid.UUID, change: Callable[[Lead], None], meta: EventMeta
    ) -> Lead:
        def run(uow: UnitOfWork) -> Lead:
            lead = self._lead(uow, lead_id, "lead_id")
            change(lead)
            return lead

        result: Lead = await self._run(run, meta)
        return result

    async def qualify_lead(self, cmd: QualifyLead, meta: EventMeta) -> Lead:
        return await self._change_lead(
            cmd.lead_id,
            lambda lead: lead.qualify(
                cmd.score, cmd.reason, cmd.actor, cmd.occurred_at
            ),
            meta,
        )

    async def accept_lead(self, cmd: AcceptLead, meta: EventMeta) -> Lead:
        return await self._change_lead(
            cmd.lead_id,
            lambda lead: lead.accept(
                cmd.owner, cmd.skip_qualification, cmd.actor, cmd.occurred_at
            ),
            meta,
        )

    async def disqualify_lead(self, cmd: DisqualifyLead, meta: EventMeta) -> Lead:
        return await self._change_lead(
            cmd.lead_id,
            lambda lead: lead.disqualify(
                cmd.reason, cmd.detail, cmd.actor, cmd.occurred_at
            ),
            meta,
        )

    async def reopen_lead(self, cmd: ReopenLead, meta: EventMeta) -> Lead:
        return await self._change_lead(
            cmd.lead_id,
            lambda lead: lead.reopen(cmd.reason, cmd.actor, cmd.occurred_at),
            meta,
        )

    async def merge_leads(self, cmd: MergeLeads, meta: EventMeta) -> Lead:
        def run(uow: UnitOfWork) -> Lead:
            survivor = self._lead(uow, cmd.surviving_lead_id, "surviving_lead_id")
            duplicate = self._lead(uow, cmd.merged_lead_id, "merged_lead_id")
            survivor.merge(duplicate, cmd.actor, cmd.occurred_at)
            claim = uow.get(
                email_claim_id(self.email_digest(duplicate.email)), EmailClaim
            )
            if claim is not None:
                claim.reassign(survivor.id)
            return survivor

        result: Lead = await self._run(run, meta)
        return result

    # -- what other contexts tell us ---------------------------------------------------

    async def record_conversion(
        self,
        lead_id: uuid.UUID,
        deal_id: uuid.UUID,
        occurred_at: datetime,
        meta: EventMeta,
    ) -> bool:
        """A deal was opened for the lead (DealOpened); idempotent per deal."""

        def run(uow: UnitOfWork) -> bool:
            lead = self._surviving_lead(uow, lead_id)
            return lead.convert(deal_id, occurred_at)

        converted: bool = await self._run(run, meta)
        return converted

    async def erase_subject(
        self,
        lead_id: uuid.UUID | None,
        email_digest: str,
        occurred_at: datetime,
        meta: EventMeta,
    ) -> list[uuid.UUID]:
        """Shreds the person's data in this context (SubjectErased); idempotent.

        Every lead of the person is erased: the one named, the one holding the
        address, and all leads merged with them. The keys go first, so a crash in
        between leaves the data unreadable; the tombstone events follow.
        """
        lead_ids = await self.executor.query(
            lambda: self._person_leads(lead_id, email_digest)
        )
        if not lead_ids:
            return []
        await asyncio.to_thread(self.store.erase_subjects, lead_ids)

        def run(uow: UnitOfWork) -> None:
            for each in lead_ids:
                lead = self._lead(uow, each, "lead_id")
                lead.erase_personal_data(occurred_at)
            if email_digest:
                claim = uow.get(email_claim_id(email_digest), EmailClaim)
                if claim is not None and claim.lead_id in lead_ids:
                    claim.release()

        await self._run(run, meta)
        return lead_ids

    def _person_leads(
        self, lead_id: uuid.UUID | None, email_digest: str
    ) -> list[uuid.UUID]:
        start: list[uuid.UUID] = []
        if lead_id is not None:
            start.append(lead_id)
        if email_digest:
            try:
                claim: EmailClaim = self.store.repository.get(
                    email_claim_id(email_digest)
                )
            except AggregateNotFoundError:
                pass
            else:
                if claim.lead_id is not None:
                    start.append(claim.lead_id)
        found: list[uuid.UUID] = []
        while start:
            current = start.pop()
            if current in found:
                continue
            try:
                lead = self.get_lead(current)
            except NotFound:
                continue
            found.append(current)
            start.extend(lead.merged_lead_ids)
            if lead.merged_into is not None:
                start.append(lead.merged_into)
        return found

    # -- queries ----------------------------------------------------------------------

    def get_lead(self, lead_id: uuid.UUID) -> Lead:
        try:
            lead: object = self.store.repository.get(lead_id)
        except AggregateNotFoundError:
            raise NotFound(f"lead {lead_id} does not exist") from None
        if not isinstance(lead, Lead):
            raise NotFound(f"lead {lead_id} does not exist")
        return lead

    def find_lead_by_email(self, email: str) -> Lead:
        try:
            claim: EmailClaim = self.store.repository.get(
                email_claim_id(self.email_digest(email))
            )
        except AggregateNotFoundError:
            raise NotFound("no lead has this email") from None
        if claim.lead_id is None:
            raise NotFound("no lead has this email")
        lead = self.get_lead(claim.lead_id)
        while lead.merged_into is not None:
            lead = self.get_lead(lead.merged_into)
        return lead

    def get_journey(self, lead_id: uuid.UUID) -> tuple[Lead, list[Touchpoint]]:
        """The person's touchpoints: the lead's, its visitors' and its duplicates'."""
        lead = self.get_lead(lead_id)
        while lead.merged_into is not None:
            lead = self.get_lead(lead.merged_into)
        touchpoints: dict[uuid.UUID, Touchpoint] = {}
        pending, seen = [lead], {lead.id}
        while pending:
            current = pending.pop()
            for tp in current.touchpoints:
                touchpoints.setdefault(tp.touchpoint_id, tp)
            for anonymous_id in current.anonymous_ids:
                try:
                    visitor: Visitor = self.store.repository.get(
                        visitor_id(anonymous_id)
                    )
                except AggregateNotFoundError:
                    continue  # identified before any touchpoint was recorded
                for tp in visitor.touchpoints:
                    touchpoints.setdefault(tp.touchpoint_id, tp)
            for merged_id in current.merged_lead_ids:
                if merged_id not in seen:
                    seen.add(merged_id)
                    pending.append(self.get_lead(merged_id))
        return lead, sorted(touchpoints.values(), key=journey_order)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _lead(uow: UnitOfWork, lead_id: uuid.UUID, field_name: str) -> Lead:
        lead = uow.get(lead_id, Lead)
        if lead is None:
            raise NotFound(f"{field_name}: lead {lead_id} does not exist")
        return lead

    def _active_lead(
        self, uow: UnitOfWork, lead_id: uuid.UUID, field_name: str
    ) -> Lead:
        lead = self._lead(uow, lead_id, field_name)
        lead.check_active()
        return lead

    def _surviving_lead(self, uow: UnitOfWork, lead_id: uuid.UUID) -> Lead:
        lead = self._lead(uow, lead_id, "lead_id")
        while lead.merged_into is not None:
            lead = self._lead(uow, lead.merged_into, "lead_id")
        return lead
