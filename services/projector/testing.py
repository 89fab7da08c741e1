"""Events as the relays publish them, without the write services.

For tests, demos and benchmarks of the read side.

`EventLog` builds protobuf events with the CloudEvents envelope a relay would give
them (event id, aggregate id and version, recorded time); `publish` puts them on the
context subjects, from where CLOSEDLOOP_LOG sources them. `scripted_quarter()` is a
small, hand-checkable quarter of marketing: the tests work its figures out by hand.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from closedloop.attribution.v1 import events_pb2 as attribution
from closedloop.bus.cloudevents import Envelope
from closedloop.bus.streams import LOG_STREAM
from closedloop.common.v1.money_pb2 import Money
from closedloop.consent.v1 import events_pb2 as consent
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.deal.v1 import events_pb2 as deal
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.identity import email_digest
from closedloop.lead.v1 import events_pb2 as lead
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.projections.reader import LogMessage
from closedloop.projections.runner import Applier
from closedloop.projections.store import GenerationKey, ReadStore, rows_of
from closedloop.protobuf import timestamp

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from google.protobuf.message import Message
    from nats.aio.client import Client

    from closedloop.projections.base import Projection

NAMESPACE = uuid.UUID("5d0c8f46-0d7e-4f1e-9b7a-3d1c2b7a9e10")
SECRET_KEY = b"closedloop-scripted-quarter-secret"


def ident(kind: str, name: str) -> str:
    """A stable UUID for a named thing of the scenario, e.g. the lead "ann"."""
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


def at(day: str, hour: int = 12) -> datetime:
    """`2026-01-05` at noon UTC (every business time of the scenario is at noon)."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def usd(minor_units: int) -> Money:
    return Money(minor_units=minor_units, currency="USD")


@dataclass(frozen=True)
class Published:
    """One event with its envelope, ready for the wire."""

    envelope: Envelope
    message: Message

    @property
    def context(self) -> str:
        return self.envelope.event_type.split(".")[1]

    @property
    def subject(self) -> str:
        return self.envelope.nats_subject

    def headers(self) -> dict[str, str]:
        return self.envelope.headers()

    def data(self) -> bytes:
        return self.message.SerializeToString()


@dataclass
class EventLog:
    """Events in the order each context's relay would publish them."""

    start: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    events: list[Published] = field(default_factory=list)
    _versions: dict[str, int] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict)
    _tick: int = 0

    def add(
        self,
        message: Message,
        *,
        aggregate: str,
        recorded_at: datetime | None = None,
    ) -> Published:
        """Appends an event of `aggregate` (its next version), recorded now-ish."""
        event_type = message.DESCRIPTOR.full_name
        context = event_type.split(".")[1]
        version = self._versions.get(aggregate, 0) + 1
        self._versions[aggregate] = version
        position = self._positions.get(context, 0) + 1
        self._positions[context] = position
        self._tick += 1
        envelope = Envelope(
            event_id=str(uuid.uuid5(NAMESPACE, f"event:{aggregate}:{version}")),
            event_type=event_type,
            source=f"/closedloop/{context}",
            subject=aggregate,
            time=recorded_at or self.start + timedelta(seconds=self._tick),
            sequence=version,
            correlation_id=str(uuid.uuid5(NAMESPACE, f"correlation:{self._tick}")),
            position=position,
        )
        published = Published(envelope, message)
        self.events.append(published)
        return published

    def version_of(self, aggregate: str) -> int:
        return self._versions.get(aggregate, 0)

    def by_context(self) -> dict[str, list[Published]]:
        found: dict[str, list[Published]] = {}
        for event in self.events:
            found.setdefault(event.context, []).append(event)
        return found


async def publish(
    nc: Client, events: Iterable[Published], *, acknowledged: bool = True
) -> int:
    """Publishes onto the context subjects; returns how many were sent.

    With `acknowledged`, every message waits for JetStream's ack (Nats-Msg-Id set,
    so a repeat is dropped within the duplicate window); without, they are sent as
    fast as the connection allows, which a benchmark wants.
    """
    js = nc.jetstream()
    count = 0
    for event in events:
        if acknowledged:
            await js.publish(event.subject, event.data(), headers=event.headers())
        else:
            await nc.publish(event.subject, event.data(), headers=event.headers())
        count += 1
    await nc.flush()
    return count


async def wait_for_log(nc: Client, count: int, timeout: float = 60.0) -> int:
    """Until CLOSEDLOOP_LOG holds at least `count` messages; returns its last seq."""
    js = nc.jetstream()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.stream_info(LOG_STREAM)
        if info.state.messages >= count:
            return int(info.state.last_seq)
        if asyncio.get_running_loop().time() > deadline:
            msg = f"{LOG_STREAM} holds {info.state.messages} of {count} messages"
            raise TimeoutError(msg)
        await asyncio.sleep(0.05)


# -- builders for each event type ----------------------------------------------------


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


PAID_SEARCH = lead_types.CHANNEL_PAID_SEARCH
PAID_SOCIAL = lead_types.CHANNEL_PAID_SOCIAL
DIRECT = lead_types.CHANNEL_DIRECT
WORD_OF_MOUTH = lead_types.CHANNEL_WORD_OF_MOUTH


def scripted_quarter() -> Scenario:  # noqa: PLR0915 - the story, fact by fact
    """Q1 2026 and the renewals of Q2, small enough to check every figure by hand.

    Ann (paid search) and Dan (paid search, with a duplicate lead merged in) are won;
    Bob (paid social) is lost; Cara (a customer's referral) is won without being an
    MQL; Eve (paid social) is disqualified and erased; Zed and Yan never leave their
    email. In Q2, Fay (referral) and Gus (paid social) are won, and the Q1 customers
    renew (Cara smaller). See tests/integration/test_insights_scenario.py for the
    figures.
    """
    s = Scenario()
    c = consent_types
    # Ann: paid search, then direct; lead, MQL, SAL, deal won 12,000.00.
    s.touch(
        "2026-01-05",
        visitor="v-ann",
        channel=PAID_SEARCH,
        source="google",
        medium="cpc",
        campaign="spring-search",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    s.touch("2026-01-10", visitor="v-ann", channel=DIRECT)
    ann = s.capture("ann", "2026-01-12", visitor="v-ann")
    s.consent(
        subject_of_lead("ann"),
        "2026-01-12",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_FORM,
        lead_id=ann,
        hour=13,
    )
    s.consent(
        subject_of_lead("ann"),
        "2026-01-12",
        granted=True,
        purpose=c.PURPOSE_MARKETING_EMAIL,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_DOUBLE_OPT_IN_REQUESTED,
        lead_id=ann,
        hour=14,
    )
    s.consent(
        subject_of_lead("ann"),
        "2026-01-13",
        granted=True,
        purpose=c.PURPOSE_MARKETING_EMAIL,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_DOUBLE_OPT_IN_CONFIRMED,
        lead_id=ann,
    )
    s.qualify(ann, "2026-01-15")
    s.accept(ann, "2026-01-20")
    deal_ann = s.open_deal("ann", ann, "2026-02-01", 1_000_000)
    s.win(deal_ann, ann, "2026-02-20", 1_200_000)
    s.recognize(
        deal_ann, ann, "2026-02-20", 1_200_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    s.consent(
        subject_of_lead("ann"),
        "2026-03-01",
        granted=False,
        purpose=c.PURPOSE_MARKETING_EMAIL,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_UNSUBSCRIBE_LINK,
        lead_id=ann,
    )
    # Bob: consent given with his email before he is a lead; paid social; lost.
    s.touch(
        "2026-01-08",
        visitor="v-bob",
        channel=PAID_SOCIAL,
        source="linkedin",
        medium="cpc",
        campaign="spring-social",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    s.consent(
        subject_of_email("bob@example.com"),
        "2026-01-08",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_FORM,
        email="bob@example.com",
        hour=13,
    )
    bob = s.capture("bob", "2026-01-09", visitor="v-bob")
    s.qualify(bob, "2026-01-20")
    s.accept(bob, "2026-02-05")
    deal_bob = s.open_deal("bob", bob, "2026-02-10", 500_000)
    s.lose(deal_bob, bob, "2026-03-01")
    for purpose in (c.PURPOSE_THIRD_PARTY_SHARING, c.PURPOSE_PROFILING):
        s.consent(
            subject_of_lead("bob"),
            "2026-02-01",
            granted=False,
            purpose=purpose,
            channel=c.CHANNEL_UNSPECIFIED,
            method=c.METHOD_GPC,
            lead_id=bob,
        )
    # Cara: a customer recommended us; accepted without being an MQL; won 8,000.00.
    s.touch(
        "2026-01-03",
        visitor="v-cara",
        channel=WORD_OF_MOUTH,
        medium="wom",
        interaction=lead_types.INTERACTION_REFERRAL,
    )
    cara = s.capture("cara", "2026-01-04", visitor="v-cara")
    s.accept(cara, "2026-01-06", skipped=True)
    deal_cara = s.open_deal("cara", cara, "2026-01-10", 800_000)
    s.win(deal_cara, cara, "2026-01-31", 800_000)
    s.recognize(
        deal_cara, cara, "2026-01-31", 800_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    # Dan: paid search; a duplicate lead (dan2) became MQL and was merged into Dan.
    s.touch(
        "2026-02-01",
        visitor="v-dan",
        channel=PAID_SEARCH,
        source="google",
        medium="cpc",
        campaign="spring-search",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    dan = s.capture("dan", "2026-02-02", visitor="v-dan")
    dan2 = s.capture("dan2", "2026-02-03", email="dan.work@example.com")
    s.qualify(dan2, "2026-02-04")
    s.merge(dan, dan2, "2026-02-05")
    s.accept(dan, "2026-02-10", skipped=True)
    deal_dan = s.open_deal("dan", dan, "2026-02-15", 300_000)
    s.win(deal_dan, dan, "2026-03-10", 300_000)
    s.recognize(
        deal_dan, dan, "2026-03-10", 300_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    # Eve: paid social; disqualified as spam; then she asked to be erased.
    s.touch(
        "2026-03-01",
        visitor="v-eve",
        channel=PAID_SOCIAL,
        source="facebook",
        medium="cpc",
        campaign="spring-social",
    )
    eve = s.capture("eve", "2026-03-02", visitor="v-eve")
    s.consent(
        subject_of_lead("eve"),
        "2026-03-02",
        granted=True,
        purpose=c.PURPOSE_NEWSLETTER,
        channel=c.CHANNEL_EMAIL,
        method=c.METHOD_FORM,
        lead_id=eve,
        hour=13,
    )
    s.disqualify(eve, "2026-03-05")
    s.erase(subject_of_lead("eve"), "2026-03-20", lead_id=eve, email="eve@example.com")
    s.erase(subject_of_email("eve@example.com"), "2026-03-20", email="eve@example.com")
    s.lead_erased(eve, "2026-03-20")
    # Visitors who never became leads.
    s.touch(
        "2026-01-15",
        visitor="v-zed",
        channel=PAID_SEARCH,
        source="bing",
        medium="cpc",
        campaign="spring-search",
    )
    s.touch(
        "2026-02-10",
        visitor="v-yan",
        channel=PAID_SOCIAL,
        source="linkedin",
        medium="cpc",
        campaign="spring-social",
    )
    # Attribution of the Q1 wins under two models, and the quarter's spend.
    s.attribute(
        deal_ann,
        ann,
        "2026-02-20",
        "linear",
        [("paid_search", "spring-search", 600_000), ("direct", "", 600_000)],
    )
    s.attribute(
        deal_ann,
        ann,
        "2026-02-20",
        "first_touch",
        [("paid_search", "spring-search", 1_200_000)],
    )
    s.attribute(
        deal_cara, cara, "2026-01-31", "linear", [("word_of_mouth", "", 800_000)]
    )
    s.attribute(
        deal_cara, cara, "2026-01-31", "first_touch", [("word_of_mouth", "", 800_000)]
    )
    s.attribute(
        deal_dan,
        dan,
        "2026-03-10",
        "linear",
        [("paid_search", "spring-search", 300_000)],
    )
    s.attribute(
        deal_dan,
        dan,
        "2026-03-10",
        "first_touch",
        [("paid_search", "spring-search", 300_000)],
    )
    s.spend(
        "q1-search", "paid_search", "spring-search", "2026-01-01", "2026-04-01", 900_000
    )
    s.spend(
        "feb-social",
        "paid_social",
        "spring-social",
        "2026-02-01",
        "2026-03-01",
        200_000,
    )
    # Q2: renewals of the Q1 customers, and two new customers.
    s.recognize(
        deal_ann,
        ann,
        "2026-05-20",
        1_200_000,
        deal_types.REVENUE_KIND_RENEWAL,
        "renewal",
    )
    s.recognize(
        deal_ann,
        ann,
        "2026-05-20",
        300_000,
        deal_types.REVENUE_KIND_EXPANSION,
        "expansion",
    )
    s.recognize(
        deal_cara,
        cara,
        "2026-04-30",
        800_000,
        deal_types.REVENUE_KIND_RENEWAL,
        "renewal",
    )
    s.recognize(
        deal_cara,
        cara,
        "2026-04-30",
        -200_000,
        deal_types.REVENUE_KIND_CONTRACTION,
        "contraction",
    )
    s.recognize(
        deal_dan, dan, "2026-06-10", 300_000, deal_types.REVENUE_KIND_RENEWAL, "renewal"
    )
    s.touch(
        "2026-04-01",
        visitor="v-fay",
        channel=WORD_OF_MOUTH,
        medium="wom",
        interaction=lead_types.INTERACTION_REFERRAL,
    )
    fay = s.capture("fay", "2026-04-02", visitor="v-fay")
    s.accept(fay, "2026-04-05", skipped=True)
    deal_fay = s.open_deal("fay", fay, "2026-04-10", 500_000)
    s.win(deal_fay, fay, "2026-04-25", 500_000)
    s.recognize(
        deal_fay, fay, "2026-04-25", 500_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    s.touch(
        "2026-04-03",
        visitor="v-gus",
        channel=PAID_SOCIAL,
        source="linkedin",
        medium="cpc",
        campaign="summer-social",
        interaction=lead_types.INTERACTION_AD_CLICK,
    )
    gus = s.capture("gus", "2026-04-04", visitor="v-gus")
    s.qualify(gus, "2026-04-06")
    s.accept(gus, "2026-04-08")
    deal_gus = s.open_deal("gus", gus, "2026-04-20", 400_000)
    s.win(deal_gus, gus, "2026-05-10", 400_000)
    s.recognize(
        deal_gus, gus, "2026-05-10", 400_000, deal_types.REVENUE_KIND_NEW, "new"
    )
    return s


def log_messages(events: Iterable[Published], first_seq: int = 1) -> list[LogMessage]:
    """The events as the log would hold them, numbered from `first_seq`."""
    return [
        LogMessage(seq, event.subject, event.headers(), event.data())
        for seq, event in enumerate(events, start=first_seq)
    ]


def apply_events(
    projection: Projection,
    events: Sequence[Published] | Sequence[LogMessage],
    *,
    store: ReadStore | None = None,
    batch_size: int = 50,
    max_attempts: int = 3,
) -> tuple[ReadStore, GenerationKey]:
    """Builds a new generation from the events with the runner's own applier.

    No NATS is involved; the store is in memory unless one is given.
    """
    store = store or ReadStore("sqlite:///:memory:")
    generation = store.create_generation(projection, created_by="test")
    ready = [m for m in events if isinstance(m, LogMessage)]
    if len(ready) != len(events):
        ready = log_messages([e for e in events if isinstance(e, Published)])
    applier = Applier(store, projection, generation.key, max_attempts=max_attempts)
    for start in range(0, len(ready), batch_size):
        applier.apply(ready[start : start + batch_size])
    return store, generation.key


def snapshot(
    store: ReadStore, projection: Projection, key: GenerationKey
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a generation, by template name, in key order."""
    with store.read() as conn:
        return {
            template.name: rows_of(conn, table)
            for template, table in store.tables_for(projection, key).items()
        }
