"""Bad requests against the real DealService over gRPC: refused, named, unrecorded.

The deal service runs beside a real lead service, which it asks before opening a deal.
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

from closedloop.common.v1.money_pb2 import Money
from closedloop.config import ServiceConfig
from closedloop.deal.v1 import deal_service_pb2 as pb
from closedloop.deal.v1 import deal_service_pb2_grpc, types_pb2
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.testing.pages import pages_of
from closedloop.testing.refusals import assert_refused
from services.deal.__main__ import bootstrap as deal_bootstrap
from services.lead.__main__ import bootstrap as lead_bootstrap

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from closedloop.natsserver import NatsServer
    from closedloop.service import Service

pytestmark = [pytest.mark.nats, pytest.mark.asyncio(loop_scope="module")]

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

UNKNOWN_ID = "5b1f7c9e-3d4a-4e8b-9c2d-000000000001"
NOW = datetime.now(UTC)
OPENED_AT = NOW - timedelta(days=10)
CLOSED_AT = NOW - timedelta(days=5)


@dataclass(frozen=True)
class Ids:
    """The leads and deals made before the bad calls, for cases to refer to."""

    lead: str
    disqualified_lead: str
    merged_lead: str
    open_deal: str
    won_deal: str
    lost_deal: str


@dataclass
class Running:
    service: Service
    stub: deal_service_pb2_grpc.DealServiceStub
    ids: Ids


@dataclass(frozen=True)
class Leads:
    lead: str
    disqualified: str
    merged: str
    address: str


# -- the services --------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def leads(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Leads]:
    """A real lead service with a lead, a disqualified lead and a merged one."""
    data_dir = tmp_path_factory.mktemp("lead-data")
    config = ServiceConfig.from_env(
        "lead",
        {
            "CLOSEDLOOP_DATA_DIR": str(data_dir),
            "CLOSEDLOOP_NATS_URL": nats_server.url,
            "CLOSEDLOOP_LEAD_GRPC_PORT": "0",
            "CLOSEDLOOP_LEAD_STORE_URL": f"sqlite:///{data_dir / 'events.db'}",
        },
    )
    service = await lead_bootstrap(config)
    address = f"127.0.0.1:{service.server.port}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = lead_service_pb2_grpc.LeadServiceStub(channel)

            async def capture(email: str) -> str:
                reply = await stub.CaptureLead(
                    lead_pb.CaptureLeadRequest(email=email, name="Test Lead"),
                    timeout=10,
                )
                lead_id: str = reply.lead.lead_id
                return lead_id

            lead = await capture("deal.lead@example.com")
            await stub.QualifyLead(
                lead_pb.QualifyLeadRequest(lead_id=lead, score=80), timeout=10
            )
            disqualified = await capture("deal.gone@example.com")
            await stub.DisqualifyLead(
                lead_pb.DisqualifyLeadRequest(
                    lead_id=disqualified,
                    reason=lead_types.DISQUALIFICATION_REASON_BAD_FIT,
                ),
                timeout=10,
            )
            merged = await capture("deal.duplicate@example.com")
            await stub.MergeLeads(
                lead_pb.MergeLeadsRequest(
                    surviving_lead_id=lead, merged_lead_id=merged
                ),
                timeout=10,
            )
        yield Leads(lead, disqualified, merged, address)
    finally:
        await service.stop(grace=1.0)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deal(
    module_store_url: str,
    leads: Leads,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Running]:
    config = ServiceConfig.from_env(
        "deal",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path_factory.mktemp("deal-data")),
            "CLOSEDLOOP_NATS_URL": nats_server.url,
            "CLOSEDLOOP_DEAL_GRPC_PORT": "0",
            "CLOSEDLOOP_DEAL_STORE_URL": module_store_url,
            "CLOSEDLOOP_LEAD_ADDRESS": leads.address,
        },
    )
    service = await deal_bootstrap(config)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.server.port}"
        ) as channel:
            stub = deal_service_pb2_grpc.DealServiceStub(channel)
            ids = await _make_deals(stub, leads)
            running = Running(service=service, stub=stub, ids=ids)
            await _check_the_bases_are_valid(running)
            yield running
    finally:
        await service.stop(grace=1.0)


async def _open_one(stub: deal_service_pb2_grpc.DealServiceStub, lead: str) -> str:
    reply = await stub.OpenDeal(
        _open(lead_id=lead, occurred_at=_ts(OPENED_AT)), timeout=10
    )
    assert reply.created
    assert reply.deal.stage == types_pb2.DEAL_STAGE_DISCOVERY
    deal_id: str = reply.deal.deal_id
    return deal_id


async def _make_deals(stub: deal_service_pb2_grpc.DealServiceStub, leads: Leads) -> Ids:
    open_deal = await _open_one(stub, leads.lead)
    won_deal = await _open_one(stub, leads.lead)
    won = await stub.WinDeal(
        pb.WinDealRequest(deal_id=won_deal, closed_at=_ts(CLOSED_AT)), timeout=10
    )
    assert won.deal.stage == types_pb2.DEAL_STAGE_WON
    lost_deal = await _open_one(stub, leads.lead)
    lost = await stub.LoseDeal(
        pb.LoseDealRequest(deal_id=lost_deal, loss_reason=types_pb2.LOSS_REASON_PRICE),
        timeout=10,
    )
    assert lost.deal.stage == types_pb2.DEAL_STAGE_LOST
    return Ids(
        lead=leads.lead,
        disqualified_lead=leads.disqualified,
        merged_lead=leads.merged,
        open_deal=open_deal,
        won_deal=won_deal,
        lost_deal=lost_deal,
    )


async def _check_the_bases_are_valid(running: Running) -> None:
    """Each base request that the cases vary succeeds and writes an event."""
    stub = running.stub
    spare = await _open_one(stub, running.ids.lead)
    won_spare = await _open_one(stub, running.ids.lead)
    await stub.WinDeal(
        pb.WinDealRequest(deal_id=won_spare, closed_at=_ts(CLOSED_AT)), timeout=10
    )
    lost_spare = await _open_one(stub, running.ids.lead)
    bases = [
        ("OpenDeal", _open(lead_id=running.ids.lead)),
        ("ChangeDealStage", _stage(spare)),
        ("UpdateDealAmount", _amount(spare)),
        ("RecordRevenue", _revenue(won_spare)),
        ("LoseDeal", _lose(lost_spare)),
        ("WinDeal", _win(spare)),
    ]
    for method, request in bases:
        before = await _max_notification_id(running.service)
        await getattr(stub, method)(request, timeout=10)
        assert await _max_notification_id(running.service) > before, method


# -- the requests the cases vary -----------------------------------------------------


def _ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _usd(minor_units: int, currency: str = "USD") -> Money:
    return Money(minor_units=minor_units, currency=currency)


def _open(**fields: Any) -> pb.OpenDealRequest:
    request: dict[str, Any] = {
        "name": "Acme platform",
        "amount": _usd(12_000_00),
        "expected_close_at": _ts(NOW + timedelta(days=30)),
    }
    request.update(fields)
    return pb.OpenDealRequest(**request)


def _stage(deal_id: str, **fields: Any) -> pb.ChangeDealStageRequest:
    request: dict[str, Any] = {
        "deal_id": deal_id,
        "stage": types_pb2.DEAL_STAGE_PROPOSAL,
    }
    request.update(fields)
    return pb.ChangeDealStageRequest(**request)


def _amount(deal_id: str, **fields: Any) -> pb.UpdateDealAmountRequest:
    request: dict[str, Any] = {"deal_id": deal_id, "amount": _usd(11_000_00)}
    request.update(fields)
    return pb.UpdateDealAmountRequest(**request)


def _win(deal_id: str, **fields: Any) -> pb.WinDealRequest:
    request: dict[str, Any] = {"deal_id": deal_id, "amount": _usd(11_500_00)}
    request.update(fields)
    return pb.WinDealRequest(**request)


def _lose(deal_id: str, **fields: Any) -> pb.LoseDealRequest:
    request: dict[str, Any] = {
        "deal_id": deal_id,
        "reason": "budget moved to next year",
        "loss_reason": types_pb2.LOSS_REASON_TIMING,
    }
    request.update(fields)
    return pb.LoseDealRequest(**request)


def _revenue(deal_id: str, **fields: Any) -> pb.RecordRevenueRequest:
    request: dict[str, Any] = {
        "deal_id": deal_id,
        "amount": _usd(1_000_00),
        "kind": types_pb2.REVENUE_KIND_NEW,
    }
    request.update(fields)
    return pb.RecordRevenueRequest(**request)


@dataclass(frozen=True)
class Case:
    method: str
    request: Callable[[Ids], Any]
    code: grpc.StatusCode
    #: INVALID_ARGUMENT: the offending field; otherwise a phrase the message must hold.
    field: str = ""
    says: str = ""


def case(
    case_id: str,
    method: str,
    request: Callable[[Ids], Any],
    code: grpc.StatusCode,
    field: str = "",
    says: str = "",
) -> Any:
    return pytest.param(Case(method, request, code, field, says), id=case_id)


def _future() -> Timestamp:
    return _ts(datetime.now(UTC) + timedelta(days=2))


def _year(year: int) -> Timestamp:
    return _ts(datetime(year, 6, 1, tzinfo=UTC))


CASES = [
    # OpenDeal
    case("open-empty-lead-id", "OpenDeal", lambda _: _open(), INVALID, "lead_id"),
    case(
        "open-lead-id-not-uuid",
        "OpenDeal",
        lambda _: _open(lead_id="lead-42"),
        INVALID,
        "lead_id",
    ),
    case(
        "open-missing-name",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, name="  "),
        INVALID,
        "name",
    ),
    case(
        "open-name-too-long",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, name="n" * 257),
        INVALID,
        "name",
    ),
    case(
        "open-name-control-characters",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, name="Acme\x00\x07"),
        INVALID,
        "name",
    ),
    case(
        "open-missing-amount",
        "OpenDeal",
        lambda i: pb.OpenDealRequest(lead_id=i.lead, name="Acme"),
        INVALID,
        "amount",
    ),
    case(
        "open-negative-amount",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, amount=_usd(-1)),
        INVALID,
        "amount.minor_units",
    ),
    case(
        "open-empty-currency",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, amount=_usd(100, "")),
        INVALID,
        "amount.currency",
    ),
    *(
        case(
            f"open-unknown-currency-{code or 'blank'}",
            "OpenDeal",
            lambda i, code=code: _open(lead_id=i.lead, amount=_usd(100, code)),  # type: ignore[misc]
            INVALID,
            "amount.currency",
        )
        for code in ("ABC", "US", "DOLLAR", "XXX", "€")
    ),
    case(
        "open-expected-close-1980",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, expected_close_at=_year(1980)),
        INVALID,
        "expected_close_at",
    ),
    case(
        "open-expected-close-out-of-range",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, expected_close_at=Timestamp(seconds=10**12)),
        INVALID,
        "expected_close_at",
    ),
    case(
        "open-occurred-at-future",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, occurred_at=_future()),
        INVALID,
        "occurred_at",
    ),
    case(
        "open-occurred-at-1980",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, occurred_at=_year(1980)),
        INVALID,
        "occurred_at",
    ),
    case(
        "open-occurred-at-out-of-range",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, occurred_at=Timestamp(seconds=10**12)),
        INVALID,
        "occurred_at",
    ),
    case(
        "open-idempotency-key-too-long",
        "OpenDeal",
        lambda i: _open(lead_id=i.lead, idempotency_key="k" * 201),
        INVALID,
        "idempotency_key",
    ),
    case(
        "open-unknown-lead",
        "OpenDeal",
        lambda _: _open(lead_id=UNKNOWN_ID),
        NOT_FOUND,
        says="does not exist",
    ),
    case(
        "open-disqualified-lead",
        "OpenDeal",
        lambda i: _open(lead_id=i.disqualified_lead),
        PRECONDITION,
        says="disqualified",
    ),
    case(
        "open-merged-lead",
        "OpenDeal",
        lambda i: _open(lead_id=i.merged_lead),
        PRECONDITION,
        says="merged into",
    ),
    # ChangeDealStage
    case(
        "stage-empty-deal-id",
        "ChangeDealStage",
        lambda _: _stage(""),
        INVALID,
        "deal_id",
    ),
    case(
        "stage-deal-id-not-uuid",
        "ChangeDealStage",
        lambda _: _stage("deal-7"),
        INVALID,
        "deal_id",
    ),
    case(
        "stage-unspecified",
        "ChangeDealStage",
        lambda i: _stage(i.open_deal, stage=types_pb2.DEAL_STAGE_UNSPECIFIED),
        INVALID,
        "stage",
    ),
    case(
        "stage-unknown-value",
        "ChangeDealStage",
        lambda i: _stage(i.open_deal, stage=99),
        INVALID,
        "stage",
    ),
    case(
        "stage-won-by-stage-change",
        "ChangeDealStage",
        lambda i: _stage(i.open_deal, stage=types_pb2.DEAL_STAGE_WON),
        INVALID,
        "stage",
    ),
    case(
        "stage-lost-by-stage-change",
        "ChangeDealStage",
        lambda i: _stage(i.open_deal, stage=types_pb2.DEAL_STAGE_LOST),
        INVALID,
        "stage",
    ),
    case(
        "stage-occurred-at-future",
        "ChangeDealStage",
        lambda i: _stage(i.open_deal, occurred_at=_future()),
        INVALID,
        "occurred_at",
    ),
    case(
        "stage-before-opening",
        "ChangeDealStage",
        lambda i: _stage(i.open_deal, occurred_at=_ts(OPENED_AT - timedelta(days=1))),
        PRECONDITION,
        says="before the deal was opened",
    ),
    case(
        "stage-unknown-deal",
        "ChangeDealStage",
        lambda _: _stage(UNKNOWN_ID),
        NOT_FOUND,
        says="does not exist",
    ),
    case(
        "stage-won-deal",
        "ChangeDealStage",
        lambda i: _stage(i.won_deal),
        PRECONDITION,
        says="won",
    ),
    case(
        "stage-lost-deal",
        "ChangeDealStage",
        lambda i: _stage(i.lost_deal),
        PRECONDITION,
        says="lost",
    ),
    # UpdateDealAmount
    case(
        "amount-missing",
        "UpdateDealAmount",
        lambda i: pb.UpdateDealAmountRequest(deal_id=i.open_deal),
        INVALID,
        "amount",
    ),
    case(
        "amount-negative",
        "UpdateDealAmount",
        lambda i: _amount(i.open_deal, amount=_usd(-100)),
        INVALID,
        "amount.minor_units",
    ),
    case(
        "amount-unknown-currency",
        "UpdateDealAmount",
        lambda i: _amount(i.open_deal, amount=_usd(100, "QQQ")),
        INVALID,
        "amount.currency",
    ),
    case(
        "amount-other-currency",
        "UpdateDealAmount",
        lambda i: _amount(i.open_deal, amount=_usd(100, "EUR")),
        PRECONDITION,
        says="never changes",
    ),
    case(
        "amount-deal-id-not-uuid",
        "UpdateDealAmount",
        lambda _: _amount("not-a-deal"),
        INVALID,
        "deal_id",
    ),
    case(
        "amount-unknown-deal",
        "UpdateDealAmount",
        lambda _: _amount(UNKNOWN_ID),
        NOT_FOUND,
        says="does not exist",
    ),
    case(
        "amount-won-deal",
        "UpdateDealAmount",
        lambda i: _amount(i.won_deal),
        PRECONDITION,
        says="won",
    ),
    case(
        "amount-lost-deal",
        "UpdateDealAmount",
        lambda i: _amount(i.lost_deal),
        PRECONDITION,
        says="lost",
    ),
    # WinDeal
    case(
        "win-negative-amount",
        "WinDeal",
        lambda i: _win(i.open_deal, amount=_usd(-1)),
        INVALID,
        "amount.minor_units",
    ),
    case(
        "win-unknown-currency",
        "WinDeal",
        lambda i: _win(i.open_deal, amount=_usd(1, "usdollar")),
        INVALID,
        "amount.currency",
    ),
    case(
        "win-other-currency",
        "WinDeal",
        lambda i: _win(i.open_deal, amount=_usd(1, "GBP")),
        PRECONDITION,
        says="never changes",
    ),
    case(
        "win-closed-at-future",
        "WinDeal",
        lambda i: _win(i.open_deal, closed_at=_future()),
        INVALID,
        "closed_at",
    ),
    case(
        "win-closed-at-1980",
        "WinDeal",
        lambda i: _win(i.open_deal, closed_at=_year(1980)),
        INVALID,
        "closed_at",
    ),
    case(
        "win-occurred-at-future",
        "WinDeal",
        lambda i: _win(i.open_deal, occurred_at=_future()),
        INVALID,
        "occurred_at",
    ),
    case(
        "win-closed-before-opening",
        "WinDeal",
        lambda i: _win(i.open_deal, closed_at=_ts(OPENED_AT - timedelta(days=1))),
        PRECONDITION,
        says="closed_at",
    ),
    case(
        "win-unknown-deal",
        "WinDeal",
        lambda _: _win(UNKNOWN_ID),
        NOT_FOUND,
        says="does not exist",
    ),
    case(
        "win-won-deal",
        "WinDeal",
        lambda i: _win(i.won_deal),
        PRECONDITION,
        says="won",
    ),
    case(
        "win-lost-deal",
        "WinDeal",
        lambda i: _win(i.lost_deal),
        PRECONDITION,
        says="lost",
    ),
    # LoseDeal
    case(
        "lose-reason-too-long",
        "LoseDeal",
        lambda i: _lose(i.open_deal, reason="r" * 2001),
        INVALID,
        "reason",
    ),
    case(
        "lose-reason-control-characters",
        "LoseDeal",
        lambda i: _lose(i.open_deal, reason="no\x1bbudget"),
        INVALID,
        "reason",
    ),
    case(
        "lose-unknown-loss-reason",
        "LoseDeal",
        lambda i: _lose(i.open_deal, loss_reason=42),
        INVALID,
        "loss_reason",
    ),
    case(
        "lose-occurred-at-1980",
        "LoseDeal",
        lambda i: _lose(i.open_deal, occurred_at=_year(1980)),
        INVALID,
        "occurred_at",
    ),
    case("lose-empty-deal-id", "LoseDeal", lambda _: _lose(""), INVALID, "deal_id"),
    case(
        "lose-unknown-deal",
        "LoseDeal",
        lambda _: _lose(UNKNOWN_ID),
        NOT_FOUND,
        says="does not exist",
    ),
    case(
        "lose-won-deal",
        "LoseDeal",
        lambda i: _lose(i.won_deal),
        PRECONDITION,
        says="won",
    ),
    case(
        "lose-lost-deal",
        "LoseDeal",
        lambda i: _lose(i.lost_deal),
        PRECONDITION,
        says="lost",
    ),
    # RecordRevenue
    case(
        "revenue-deal-id-not-uuid",
        "RecordRevenue",
        lambda _: _revenue("x"),
        INVALID,
        "deal_id",
    ),
    case(
        "revenue-missing-amount",
        "RecordRevenue",
        lambda i: pb.RecordRevenueRequest(
            deal_id=i.won_deal, kind=types_pb2.REVENUE_KIND_NEW
        ),
        INVALID,
        "amount",
    ),
    case(
        "revenue-kind-unspecified",
        "RecordRevenue",
        lambda i: _revenue(i.won_deal, kind=types_pb2.REVENUE_KIND_UNSPECIFIED),
        INVALID,
        "kind",
    ),
    case(
        "revenue-kind-unknown",
        "RecordRevenue",
        lambda i: _revenue(i.won_deal, kind=77),
        INVALID,
        "kind",
    ),
    *(
        case(
            f"revenue-{name}-{minor_units}",
            "RecordRevenue",
            lambda i, kind=kind, minor_units=minor_units: _revenue(  # type: ignore[misc]
                i.won_deal, kind=kind, amount=_usd(minor_units)
            ),
            INVALID,
            "amount.minor_units",
        )
        for name, kind, minor_units in (
            ("new", types_pb2.REVENUE_KIND_NEW, -100),
            ("new", types_pb2.REVENUE_KIND_NEW, 0),
            ("renewal", types_pb2.REVENUE_KIND_RENEWAL, -100),
            ("expansion", types_pb2.REVENUE_KIND_EXPANSION, 0),
            ("contraction", types_pb2.REVENUE_KIND_CONTRACTION, 100),
            ("contraction", types_pb2.REVENUE_KIND_CONTRACTION, 0),
            ("churn", types_pb2.REVENUE_KIND_CHURN, 100),
            ("churn", types_pb2.REVENUE_KIND_CHURN, 0),
        )
    ),
    case(
        "revenue-unknown-currency",
        "RecordRevenue",
        lambda i: _revenue(i.won_deal, amount=_usd(100, "ZZZ")),
        INVALID,
        "amount.currency",
    ),
    case(
        "revenue-other-currency",
        "RecordRevenue",
        lambda i: _revenue(i.won_deal, amount=_usd(100, "JPY")),
        PRECONDITION,
        says="never changes",
    ),
    case(
        "revenue-recognized-at-future",
        "RecordRevenue",
        lambda i: _revenue(i.won_deal, recognized_at=_future()),
        INVALID,
        "recognized_at",
    ),
    case(
        "revenue-recognized-at-1980",
        "RecordRevenue",
        lambda i: _revenue(i.won_deal, recognized_at=_year(1980)),
        INVALID,
        "recognized_at",
    ),
    case(
        "revenue-recognized-before-the-win",
        "RecordRevenue",
        lambda i: _revenue(
            i.won_deal, recognized_at=_ts(CLOSED_AT - timedelta(days=1))
        ),
        PRECONDITION,
        says="recognized_at",
    ),
    case(
        "revenue-idempotency-key-too-long",
        "RecordRevenue",
        lambda i: _revenue(i.won_deal, idempotency_key="k" * 201),
        INVALID,
        "idempotency_key",
    ),
    case(
        "revenue-open-deal",
        "RecordRevenue",
        lambda i: _revenue(i.open_deal),
        PRECONDITION,
        says="only for won deals",
    ),
    case(
        "revenue-lost-deal",
        "RecordRevenue",
        lambda i: _revenue(i.lost_deal),
        PRECONDITION,
        says="only for won deals",
    ),
    case(
        "revenue-unknown-deal",
        "RecordRevenue",
        lambda _: _revenue(UNKNOWN_ID),
        NOT_FOUND,
        says="does not exist",
    ),
    # GetDeal
    case(
        "get-empty-deal-id",
        "GetDeal",
        lambda _: pb.GetDealRequest(),
        INVALID,
        "deal_id",
    ),
    case(
        "get-unknown-deal",
        "GetDeal",
        lambda _: pb.GetDealRequest(deal_id=UNKNOWN_ID),
        NOT_FOUND,
        says="does not exist",
    ),
    # ListDealsForLead
    case(
        "list-empty-lead-id",
        "ListDealsForLead",
        lambda _: pb.ListDealsForLeadRequest(),
        INVALID,
        "lead_id",
    ),
    case(
        "list-lead-id-not-uuid",
        "ListDealsForLead",
        lambda _: pb.ListDealsForLeadRequest(lead_id="lead 1"),
        INVALID,
        "lead_id",
    ),
    case(
        "list-negative-page-size",
        "ListDealsForLead",
        lambda ids: pb.ListDealsForLeadRequest(lead_id=ids.lead, page_size=-1),
        INVALID,
        "page_size",
    ),
    case(
        "list-junk-page-token",
        "ListDealsForLead",
        lambda ids: pb.ListDealsForLeadRequest(
            lead_id=ids.lead,
            page_token="bm90IGEgdG9rZW4",  # noqa: S106 - a page token
        ),
        INVALID,
        "page_token",
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
        case.request(running.ids),
        code=case.code,
        field=case.field,
        says=case.says,
    )


@pytest.mark.parametrize("case", CASES)
async def test_bad_request_is_refused_and_records_nothing(
    deal: Running, case: Case
) -> None:
    await _refused(deal, case)


@pytest.mark.parametrize(
    ("method", "request_", "every"),
    [
        pytest.param(
            "OpenDeal",
            lambda _: _open(
                lead_id="lead-42", amount=_usd(-1), idempotency_key="k" * 201
            ),
            ("lead_id", "amount.minor_units", "idempotency_key"),
            id="open",
        ),
        pytest.param(
            "WinDeal",
            lambda _: _win("", amount=_usd(1, "ZZZ"), closed_at=_year(1980)),
            ("deal_id", "amount.currency", "closed_at"),
            id="win",
        ),
        pytest.param(
            "RecordRevenue",
            lambda ids: _revenue(ids.won_deal, kind=0, occurred_at=_future()),
            ("kind", "occurred_at"),
            id="revenue",
        ),
    ],
)
async def test_every_bad_field_of_a_request_is_listed(
    deal: Running,
    method: str,
    request_: Callable[[Ids], Any],
    every: tuple[str, ...],
) -> None:
    """One refusal lists each bad field; the message stays the first one's."""
    await assert_refused(
        deal.service.store,
        deal.stub,
        method,
        request_(deal.ids),
        code=INVALID,
        field=every[0],
        every=every,
    )


async def test_refused_deals_are_unchanged(deal: Running) -> None:
    """The deals the bad calls aimed at are as the setup left them."""

    async def get(deal_id: str) -> pb.Deal:
        reply = await deal.stub.GetDeal(pb.GetDealRequest(deal_id=deal_id), timeout=10)
        found: pb.Deal = reply.deal
        return found

    open_deal = await get(deal.ids.open_deal)
    won = await get(deal.ids.won_deal)
    lost = await get(deal.ids.lost_deal)
    assert open_deal.stage == types_pb2.DEAL_STAGE_DISCOVERY
    assert open_deal.version == 1
    assert open_deal.amount == _usd(12_000_00)
    assert open_deal.currency_exponent == 2
    assert won.stage == types_pb2.DEAL_STAGE_WON
    assert won.version == 2
    assert list(won.revenues) == []
    assert lost.stage == types_pb2.DEAL_STAGE_LOST
    assert lost.version == 2


async def test_a_lead_without_deals_lists_none(deal: Running) -> None:
    reply = await deal.stub.ListDealsForLead(
        pb.ListDealsForLeadRequest(lead_id=UNKNOWN_ID), timeout=10
    )
    assert list(reply.deals) == []
    listed = await deal.stub.ListDealsForLead(
        pb.ListDealsForLeadRequest(lead_id=deal.ids.lead), timeout=10
    )
    ids = [d.deal_id for d in listed.deals]
    for deal_id in (deal.ids.open_deal, deal.ids.won_deal, deal.ids.lost_deal):
        assert deal_id in ids


async def test_the_deals_of_a_lead_come_a_page_at_a_time(deal: Running) -> None:
    """Pages of any size add up to the whole list, in its order."""
    whole = await deal.stub.ListDealsForLead(
        pb.ListDealsForLeadRequest(lead_id=deal.ids.lead), timeout=10
    )
    assert len(whole.deals) >= 3
    assert whole.next_page_token == ""

    async def listed(page_size: int, token: str) -> pb.ListDealsForLeadResponse:
        page: pb.ListDealsForLeadResponse = await deal.stub.ListDealsForLead(
            pb.ListDealsForLeadRequest(
                lead_id=deal.ids.lead, page_size=page_size, page_token=token
            ),
            timeout=10,
        )
        return page

    for page_size in (1, 2):
        pages = await pages_of(listed, page_size)
        assert len(pages) == -(-len(whole.deals) // page_size)
        assert [d for p in pages for d in p.deals] == list(whole.deals)
