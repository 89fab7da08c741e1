"""A story written as events: one method per business fact, stable ids by name."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from closedloop.attribution.v1 import events_pb2 as attribution
from closedloop.common.v1.money_pb2 import Money
from closedloop.consent.v1 import events_pb2 as consent
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.deal.v1 import events_pb2 as deal
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.identity import email_digest
from closedloop.lead.v1 import events_pb2 as lead
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.protobuf import timestamp
from closedloop.testing.readside.eventlog import NAMESPACE, EventLog

if TYPE_CHECKING:
    from collections.abc import Sequence

    from google.protobuf.message import Message

SECRET_KEY = b"closedloop-scripted-quarter-secret"


def ident(kind: str, name: str) -> str:
    """A stable UUID for a named thing of the scenario, e.g. the lead "ann"."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


def at(day: str, hour: int = 12) -> datetime:
    """`2026-01-05` at noon UTC (every business time of the scenario is at noon)."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def usd(minor_units: int) -> Money:
    return Money(minor_units=minor_units, currency="USD")


@dataclass
class Scenario:
    """Writes a story as events: one method per business fact."""

    log: EventLog = field(default_factory=EventLog)
    secret_key: bytes = SECRET_KEY

    def touch(
        self,
        day: str,
        *,
        visitor: str = "",
        lead_id: str = "",
        channel: int,
        source: str = "",
        medium: str = "",
        campaign: str = "",
        interaction: int = lead_types.INTERACTION_PAGE_VIEW,
        hour: int = 12,
    ) -> str:
        touchpoint_id = ident("touch", f"{visitor or lead_id}:{day}:{hour}:{channel}")
        aggregate = lead_id or ident("visitor", visitor)
        if visitor and not lead_id and self.log.version_of(aggregate) == 0:
            self.log.add(
                lead.VisitorFirstSeen(
                    anonymous_id=visitor, occurred_at=timestamp(at(day, hour))
                ),
                aggregate=aggregate,
            )
        self.log.add(
            lead.TouchpointRecorded(
                touchpoint=lead_types.Touchpoint(
                    touchpoint_id=touchpoint_id,
                    anonymous_id=visitor if not lead_id else "",
                    lead_id=lead_id,
                    channel=channel,  # type: ignore[arg-type]
                    source=source,
                    medium=medium,
                    campaign=campaign,
                    interaction=interaction,  # type: ignore[arg-type]
                    occurred_at=timestamp(at(day, hour)),
                )
            ),
            aggregate=aggregate,
        )
        return touchpoint_id

    def capture(
        self, name: str, day: str, *, visitor: str = "", email: str = ""
    ) -> str:
        lead_id = ident("lead", name)
        when = timestamp(at(day))
        self.log.add(
            lead.LeadCaptured(
                lead_id=lead_id,
                email="pii:v1:" + uuid.uuid5(NAMESPACE, f"email-token:{name}").hex,
                name="pii:v1:" + uuid.uuid5(NAMESPACE, f"name-token:{name}").hex,
                company="",
                source_system="web_form",
                anonymous_id=visitor,
                occurred_at=when,
                email_digest=email_digest(
                    self.secret_key, email or f"{name}@example.com"
                ),
            ),
            aggregate=lead_id,
        )
        if visitor:
            self.log.add(
                lead.VisitorIdentified(
                    lead_id=lead_id, anonymous_id=visitor, occurred_at=when
                ),
                aggregate=lead_id,
            )
        return lead_id

    def qualify(self, lead_id: str, day: str) -> None:
        self.log.add(
            lead.LeadQualified(
                lead_id=lead_id,
                score=70,
                reason="pii:v1:reason",
                actor="marketing-ops",
                occurred_at=timestamp(at(day)),
            ),
            aggregate=lead_id,
        )

    def accept(self, lead_id: str, day: str, *, skipped: bool = False) -> None:
        self.log.add(
            lead.LeadAccepted(
                lead_id=lead_id,
                owner="rep-1",
                skipped_qualification=skipped,
                actor="sales",
                occurred_at=timestamp(at(day)),
            ),
            aggregate=lead_id,
        )

    def disqualify(self, lead_id: str, day: str) -> None:
        self.log.add(
            lead.LeadDisqualified(
                lead_id=lead_id,
                reason=lead_types.DISQUALIFICATION_REASON_SPAM,
                detail="pii:v1:detail",
                actor="sales",
                occurred_at=timestamp(at(day)),
            ),
            aggregate=lead_id,
        )

    def merge(self, survivor: str, merged: str, day: str) -> None:
        when = timestamp(at(day))
        self.log.add(
            lead.LeadsMerged(
                surviving_lead_id=survivor,
                merged_lead_id=merged,
                actor="ops",
                occurred_at=when,
            ),
            aggregate=survivor,
        )
        self.log.add(
            lead.LeadMergedInto(
                merged_lead_id=merged, surviving_lead_id=survivor, occurred_at=when
            ),
            aggregate=merged,
        )

    def open_deal(self, name: str, lead_id: str, day: str, amount: int) -> str:
        deal_id = ident("deal", name)
        when = timestamp(at(day))
        self.log.add(
            deal.DealOpened(
                deal_id=deal_id,
                lead_id=lead_id,
                name="pii:v1:deal-name",
                amount=usd(amount),
                occurred_at=when,
            ),
            aggregate=deal_id,
        )
        self.log.add(
            lead.LeadConverted(lead_id=lead_id, deal_id=deal_id, occurred_at=when),
            aggregate=lead_id,
        )
        return deal_id

    def win(self, deal_id: str, lead_id: str, day: str, amount: int) -> None:
        self.log.add(
            deal.DealWon(
                deal_id=deal_id,
                lead_id=lead_id,
                amount=usd(amount),
                closed_at=timestamp(at(day)),
            ),
            aggregate=deal_id,
        )

    def lose(self, deal_id: str, lead_id: str, day: str) -> None:
        self.log.add(
            deal.DealLost(
                deal_id=deal_id,
                lead_id=lead_id,
                reason="pii:v1:lost",
                loss_reason=deal_types.LOSS_REASON_PRICE,
                occurred_at=timestamp(at(day)),
            ),
            aggregate=deal_id,
        )

    def recognize(
        self, deal_id: str, lead_id: str, day: str, amount: int, kind: int, label: str
    ) -> str:
        revenue_id = ident("revenue", f"{deal_id}:{label}")
        self.log.add(
            deal.RevenueRecognized(
                deal_id=deal_id,
                lead_id=lead_id,
                revenue_id=revenue_id,
                amount=usd(amount),
                kind=kind,  # type: ignore[arg-type]
                recognized_at=timestamp(at(day)),
            ),
            aggregate=deal_id,
        )
        return revenue_id

    def attribute(
        self,
        deal_id: str,
        lead_id: str,
        day: str,
        model: str,
        shares: Sequence[tuple[str, str, int]],
        *,
        revenue_id: str = "",
        revenue_kind: str = "",
    ) -> None:
        total = sum(amount for _, _, amount in shares)
        kind = (
            attribution.CONVERSION_KIND_REVENUE_RECOGNIZED
            if revenue_id
            else attribution.CONVERSION_KIND_WON
        )
        self.log.add(
            attribution.RevenueAttributed(
                deal_id=deal_id,
                lead_id=lead_id,
                model=model,
                model_key=f"{model}(lookback=7776000s)",
                conversion_kind=kind,
                revenue_id=revenue_id,
                revenue_kind=revenue_kind,
                amount=usd(total),
                occurred_at=timestamp(at(day)),
                credits=[
                    attribution.Credit(
                        channel=channel, campaign=campaign, amount=usd(amount)
                    )
                    for channel, campaign, amount in shares
                ],
            ),
            aggregate=ident("conversion", f"{deal_id}:{revenue_id or 'won'}"),
        )

    def spend(
        self, name: str, channel: str, campaign: str, first: str, end: str, amount: int
    ) -> None:
        spend_id = ident("spend", name)
        self.log.add(
            attribution.SpendRecorded(
                spend_id=spend_id,
                channel=channel,
                campaign=campaign,
                amount=usd(amount),
                period_start=timestamp(at(first, 0)),
                period_end=timestamp(at(end, 0)),
                occurred_at=timestamp(at(first, 0)),
            ),
            aggregate=spend_id,
        )

    def consent(
        self,
        subject: str,
        day: str,
        *,
        granted: bool,
        purpose: int,
        channel: int,
        method: int,
        lead_id: str = "",
        email: str = "",
        hour: int = 12,
    ) -> None:
        digest = email_digest(self.secret_key, email) if email else ""
        fields: dict[str, Any] = {
            "subject_aggregate_id": subject,
            "change_id": ident("change", f"{subject}:{day}:{hour}:{purpose}:{channel}"),
            "lead_id": lead_id,
            "email": "pii:v1:email" if email else "",
            "email_digest": digest,
            "purpose": purpose,
            "channel": channel,
            "legal_basis": consent_types.LEGAL_BASIS_CONSENT,
            "source_system": consent_types.SOURCE_SYSTEM_WEB_FORM,
            "method": method,
            "evidence": consent_types.Evidence(
                notice_version="privacy-2026-01",
                capture_method="checkbox",
                request_origin="pii:v1:origin",
            ),
            "occurred_at": timestamp(at(day, hour)),
        }
        message: Message = (
            consent.ConsentGranted(**fields)
            if granted
            else consent.ConsentWithdrawn(**fields)
        )
        self.log.add(message, aggregate=subject)

    def erase(
        self, subject: str, day: str, *, lead_id: str = "", email: str = ""
    ) -> None:
        self.log.add(
            consent.SubjectErased(
                subject_aggregate_id=subject,
                lead_id=lead_id,
                email_digest=email_digest(self.secret_key, email) if email else "",
                occurred_at=timestamp(at(day)),
            ),
            aggregate=subject,
        )

    def lead_erased(self, lead_id: str, day: str) -> None:
        self.log.add(
            lead.LeadPersonalDataErased(
                lead_id=lead_id, occurred_at=timestamp(at(day))
            ),
            aggregate=lead_id,
        )


def subject_of_lead(name: str) -> str:
    return ident("consent-lead", name)


def subject_of_email(email: str) -> str:
    return ident("consent-email", email)
