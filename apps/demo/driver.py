"""Sends a planned quarter through the public gRPC APIs, as real clients would."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from closedloop import retry
from closedloop.attribution.v1 import attribution_service_pb2 as attribution_pb
from closedloop.attribution.v1 import attribution_service_pb2_grpc
from closedloop.common.v1.money_pb2 import Money
from closedloop.consent.v1 import consent_service_pb2 as consent_pb
from closedloop.consent.v1 import consent_service_pb2_grpc
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.deal.v1 import deal_service_pb2 as deal_pb
from closedloop.deal.v1 import deal_service_pb2_grpc
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.protobuf import timestamp

if TYPE_CHECKING:
    from apps.demo.scenario import PersonPlan, QuarterPlan, SpendPlan, Step

log = logging.getLogger(__name__)

#: Codes that mean "already done": the demo can be run again over the same data.
ALREADY_DONE = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS}
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _worth_retrying(error: BaseException) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in RETRYABLE


CONSENT_METHODS = {
    "web_form": ("SOURCE_SYSTEM_WEB_FORM", "METHOD_DOUBLE_OPT_IN_CONFIRMED"),
    "preference_centre": (
        "SOURCE_SYSTEM_PREFERENCE_CENTRE",
        "METHOD_PREFERENCE_CENTRE",
    ),
    "crm": ("SOURCE_SYSTEM_CRM", "METHOD_SALES_REP"),
    "email_tool": ("SOURCE_SYSTEM_EMAIL_TOOL", "METHOD_UNSUBSCRIBE_LINK"),
}


@dataclass
class Addresses:
    lead: str
    deal: str
    consent: str
    attribution: str


@dataclass
class PersonState:
    lead_id: str = ""
    email: str = ""
    duplicate_id: str = ""
    deal_id: str = ""


@dataclass
class DriveResult:
    calls: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


class QuarterDriver:
    """Each person's steps run in order; many people run at once."""

    def __init__(self, addresses: Addresses, *, concurrency: int = 48) -> None:
        self._channels = {
            name: grpc.aio.insecure_channel(address)
            for name, address in vars(addresses).items()
        }
        self.leads = lead_service_pb2_grpc.LeadServiceStub(self._channels["lead"])
        self.deals = deal_service_pb2_grpc.DealServiceStub(self._channels["deal"])
        self.consents = consent_service_pb2_grpc.ConsentServiceStub(
            self._channels["consent"]
        )
        self.attribution = attribution_service_pb2_grpc.AttributionServiceStub(
            self._channels["attribution"]
        )
        self._limit = asyncio.Semaphore(concurrency)
        self.result = DriveResult()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def run(self, plan: QuarterPlan, *, progress: bool = True) -> DriveResult:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task("simulating the quarter", total=plan.steps)

            async def person(p: PersonPlan) -> None:
                async with self._limit:
                    state = PersonState()
                    for step in p.steps:
                        await self._call(step.kind, self._step(p, state, step))
                        bar.advance(task)

            async def spend(s: SpendPlan, index: int) -> None:
                async with self._limit:
                    await self._call("spend", self._spend(plan.seed, s, index))
                    bar.advance(task)

            await asyncio.gather(
                *(person(p) for p in plan.people),
                *(spend(s, i) for i, s in enumerate(plan.spend)),
            )
        return self.result

    async def _call(self, kind: str, call: Any) -> Any:
        """Runs one call, retrying what may pass later; 'already done' is skipped."""
        try:
            reply = await retry.call_async(
                call,
                on=_worth_retrying,
                backoff=retry.Backoff(first=0.2, cap=1.6),
                attempts=8,
            )
        except _AlreadyDone:
            self.result.skipped[kind] += 1
            return None
        except grpc.aio.AioRpcError as error:
            if error.code() in ALREADY_DONE:
                self.result.skipped[kind] += 1
                return None
            raise
        self.result.calls[kind] += 1
        return reply

    def _step(self, person: PersonPlan, state: PersonState, step: Step) -> Any:  # noqa: C901, PLR0911
        at = timestamp(step.at)
        args = step.args
        anonymous_id = f"{person.key}-cookie"
        if step.kind == "touch":
            return lambda: self.leads.RecordTouchpoint(
                lead_pb.RecordTouchpointRequest(
                    anonymous_id=anonymous_id,
                    source=str(args["source"]),
                    medium=str(args["medium"]),
                    campaign=str(args["campaign"]),
                    interaction=_enum(
                        lead_types.Interaction, "INTERACTION_", args["interaction"]
                    ),
                    occurred_at=at,
                    idempotency_key=str(args["key"]),
                ),
                timeout=10,
            )
        if step.kind in {"capture", "duplicate"}:

            async def capture() -> Any:
                reply = await self.leads.CaptureLead(
                    lead_pb.CaptureLeadRequest(
                        anonymous_id=anonymous_id if step.kind == "capture" else "",
                        email=str(args["email"]),
                        name=str(args["name"]),
                        company=str(args["company"]),
                        source_system="web_form",
                        occurred_at=at,
                        idempotency_key=f"{person.key}-{step.kind}",
                    ),
                    timeout=10,
                )
                if step.kind == "capture":
                    state.lead_id, state.email = reply.lead.lead_id, str(args["email"])
                else:
                    state.duplicate_id = reply.lead.lead_id
                return reply

            return capture
        if step.kind in {"grant", "withdraw"}:
            return self._consent(person, state, step)
        lead_id = state.lead_id
        if step.kind == "qualify":
            return lambda: self.leads.QualifyLead(
                lead_pb.QualifyLeadRequest(
                    lead_id=lead_id,
                    score=int(str(args["score"])),
                    reason="scoring model",
                    actor="scoring",
                    occurred_at=at,
                ),
                timeout=10,
            )
        if step.kind == "accept":
            return lambda: self.leads.AcceptLead(
                lead_pb.AcceptLeadRequest(
                    lead_id=lead_id,
                    owner=str(args["owner"]),
                    actor="sdr",
                    occurred_at=at,
                ),
                timeout=10,
            )
        if step.kind == "disqualify":
            return lambda: self.leads.DisqualifyLead(
                lead_pb.DisqualifyLeadRequest(
                    lead_id=lead_id,
                    reason=_enum(
                        lead_types.DisqualificationReason,
                        "DISQUALIFICATION_REASON_",
                        args["reason"],
                    ),
                    actor="sdr",
                    occurred_at=at,
                ),
                timeout=10,
            )
        if step.kind == "merge" and state.duplicate_id in {"", lead_id}:
            return _already_done  # merged by an earlier run of the same quarter
        if step.kind == "merge":
            return lambda: self.leads.MergeLeads(
                lead_pb.MergeLeadsRequest(
                    surviving_lead_id=lead_id,
                    merged_lead_id=state.duplicate_id,
                    actor="ops",
                    occurred_at=at,
                ),
                timeout=10,
            )
        if step.kind == "erase":
            return lambda: self.consents.EraseSubject(
                consent_pb.EraseSubjectRequest(
                    subject_id=lead_id, email=state.email, occurred_at=at
                ),
                timeout=10,
            )
        return self._deal(person, state, step)

    def _consent(self, person: PersonPlan, state: PersonState, step: Step) -> Any:
        args = step.args
        source, method = CONSENT_METHODS[str(args["source"])]
        purpose = str(args["purpose"])
        channel = "CHANNEL_PHONE" if purpose == "sales_contact" else "CHANNEL_EMAIL"
        fields: dict[str, Any] = {
            "subject_id": state.lead_id,
            "email": state.email,
            "purpose": consent_types.Purpose.Value("PURPOSE_" + purpose.upper()),
            "channel": consent_types.Channel.Value(channel),
            "source_system": consent_types.SourceSystem.Value(source),
            "method": consent_types.Method.Value(method),
            "legal_basis": consent_types.LEGAL_BASIS_CONSENT,
            "evidence": consent_types.Evidence(notice_version="privacy-2026-06"),
            "occurred_at": timestamp(step.at),
            "idempotency_key": f"{person.key}-{step.kind}-{purpose}-{step.at:%s}",
        }
        if step.kind == "grant":
            return lambda: self.consents.GrantConsent(
                consent_pb.GrantConsentRequest(**fields),
                timeout=10,
            )
        return lambda: self.consents.WithdrawConsent(
            consent_pb.WithdrawConsentRequest(**fields),
            timeout=10,
        )

    def _deal(self, person: PersonPlan, state: PersonState, step: Step) -> Any:
        args = step.args
        at = timestamp(step.at)
        if step.kind == "open_deal":

            async def open_deal() -> Any:
                reply = await self.deals.OpenDeal(
                    deal_pb.OpenDealRequest(
                        lead_id=state.lead_id,
                        name=f"{person.key} platform subscription",
                        amount=usd(int(str(args["amount"]))),
                        occurred_at=at,
                        idempotency_key=f"{person.key}-deal",
                    ),
                    timeout=10,
                )
                state.deal_id = reply.deal.deal_id
                return reply

            return open_deal
        if step.kind == "win":
            return lambda: self.deals.WinDeal(
                deal_pb.WinDealRequest(
                    deal_id=state.deal_id,
                    amount=usd(int(str(args["amount"]))),
                    closed_at=at,
                    occurred_at=at,
                ),
                timeout=10,
            )
        if step.kind == "lose":
            return lambda: self.deals.LoseDeal(
                deal_pb.LoseDealRequest(
                    deal_id=state.deal_id,
                    reason=str(args["reason"]),
                    loss_reason=_enum(
                        deal_types.LossReason, "LOSS_REASON_", args["reason"]
                    ),
                    occurred_at=at,
                ),
                timeout=10,
            )
        if step.kind == "revenue":
            return lambda: self.deals.RecordRevenue(
                deal_pb.RecordRevenueRequest(
                    deal_id=state.deal_id,
                    amount=usd(int(str(args["amount"]))),
                    kind=_enum(deal_types.RevenueKind, "REVENUE_KIND_", args["kind"]),
                    recognized_at=at,
                    occurred_at=at,
                    idempotency_key=f"{person.key}-revenue-{args['n']}",
                ),
                timeout=10,
            )
        msg = f"unknown step {step.kind!r}"
        raise ValueError(msg)

    def _spend(self, seed: int, spend: SpendPlan, index: int) -> Any:
        return lambda: self.attribution.RecordSpend(
            attribution_pb.RecordSpendRequest(
                channel=spend.channel,
                campaign=spend.campaign,
                amount=usd(spend.amount),
                period_start=timestamp(spend.period_start),
                period_end=timestamp(spend.period_end),
                occurred_at=timestamp(spend.period_end),
                idempotency_key=f"s{seed}-spend-{index}",
            ),
            timeout=10,
        )


async def _already_done() -> None:
    raise _AlreadyDone


class _AlreadyDone(Exception):  # noqa: N818 - a signal, not an error
    """A step an earlier run of the same seed has done."""


def usd(minor_units: int) -> Money:
    return Money(minor_units=minor_units, currency="USD")


def _enum(enum: Any, prefix: str, name: object) -> Any:
    return enum.Value(prefix + str(name).upper())
