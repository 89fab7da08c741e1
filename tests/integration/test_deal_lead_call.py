"""OpenDeal asks the real lead service over gRPC, and fails cleanly when it cannot.

The deal service runs in process beside a real lead service on free ports. When the
lead service is up, its answer decides: unknown lead NOT_FOUND, disqualified or merged
lead FAILED_PRECONDITION, otherwise the deal opens. When it is down, stopped, or never
answers, OpenDeal is UNAVAILABLE within its deadline and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import TYPE_CHECKING

import grpc
import pytest

from closedloop.common.v1.money_pb2 import Money
from closedloop.config import ServiceConfig
from closedloop.deal.v1 import deal_service_pb2 as pb
from closedloop.deal.v1 import deal_service_pb2_grpc, types_pb2
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.natsserver import free_port
from closedloop.testing.streams import eventually
from services.deal.__main__ import bootstrap as deal_bootstrap
from services.deal.lead_directory import LEAD_DEADLINE_SECONDS
from services.lead.__main__ import bootstrap as lead_bootstrap

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from closedloop.natsserver import NatsServer
    from closedloop.service import Service

pytestmark = [pytest.mark.nats]

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
#: The lead call's deadline plus ample room for a loaded machine.
WITHIN = 5.0


# -- services ------------------------------------------------------------------------


async def start_lead(data_dir: Path, nats_url: str, port: int = 0) -> Service:
    config = ServiceConfig.from_env(
        "lead",
        {
            "CLOSEDLOOP_DATA_DIR": str(data_dir),
            "CLOSEDLOOP_NATS_URL": nats_url,
            "CLOSEDLOOP_LEAD_GRPC_PORT": str(port),
            "CLOSEDLOOP_LEAD_STORE_URL": f"sqlite:///{data_dir / 'lead.db'}",
        },
    )
    return await lead_bootstrap(config)


@contextlib.asynccontextmanager
async def deal_service(
    data_dir: Path, nats_url: str, lead_address: str
) -> AsyncIterator[tuple[Service, deal_service_pb2_grpc.DealServiceStub]]:
    config = ServiceConfig.from_env(
        "deal",
        {
            "CLOSEDLOOP_DATA_DIR": str(data_dir),
            "CLOSEDLOOP_NATS_URL": nats_url,
            "CLOSEDLOOP_DEAL_GRPC_PORT": "0",
            "CLOSEDLOOP_DEAL_STORE_URL": f"sqlite:///{data_dir / 'deal.db'}",
            "CLOSEDLOOP_LEAD_ADDRESS": lead_address,
        },
    )
    service = await deal_bootstrap(config)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.server.port}"
        ) as channel:
            yield service, deal_service_pb2_grpc.DealServiceStub(channel)
    finally:
        await service.stop(grace=1.0)


@contextlib.asynccontextmanager
async def lead_client(
    address: str,
) -> AsyncIterator[lead_service_pb2_grpc.LeadServiceStub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield lead_service_pb2_grpc.LeadServiceStub(channel)


async def capture(stub: lead_service_pb2_grpc.LeadServiceStub, email: str) -> str:
    reply = await stub.CaptureLead(
        lead_pb.CaptureLeadRequest(email=email, name="Ana"), timeout=10
    )
    lead_id: str = reply.lead.lead_id
    return lead_id


async def max_notification_id(service: Service) -> int:
    return await asyncio.to_thread(service.store.recorder.max_notification_id) or 0


def open_request(lead_id: str, key: str = "") -> pb.OpenDealRequest:
    return pb.OpenDealRequest(
        lead_id=lead_id,
        name="Acme platform",
        amount=Money(minor_units=12_000_00, currency="EUR"),
        idempotency_key=key,
    )


async def refused_unavailable(
    service: Service, stub: deal_service_pb2_grpc.DealServiceStub, lead_id: str
) -> float:
    """OpenDeal fails with UNAVAILABLE and writes nothing; returns how long it took."""
    before = await max_notification_id(service)
    listed_before = await stub.ListDealsForLead(
        pb.ListDealsForLeadRequest(lead_id=lead_id), timeout=10
    )
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.OpenDeal(open_request(lead_id, key="while-away"), timeout=30)
    elapsed = time.monotonic() - started
    assert raised.value.code() == UNAVAILABLE, raised.value.details()
    assert "lead service" in (raised.value.details() or "")
    assert elapsed < WITHIN
    assert await max_notification_id(service) == before
    listed = await stub.ListDealsForLead(
        pb.ListDealsForLeadRequest(lead_id=lead_id), timeout=10
    )
    assert listed == listed_before
    return elapsed


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A port that accepts connections and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


# -- the lead service is up ----------------------------------------------------------


async def test_open_deal_follows_the_lead_services_answer(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    lead = await start_lead(tmp_path, nats_server.url)
    address = f"127.0.0.1:{lead.server.port}"
    try:
        async with lead_client(address) as leads:
            qualified = await capture(leads, "qualified@example.com")
            await leads.QualifyLead(
                lead_pb.QualifyLeadRequest(lead_id=qualified, score=70), timeout=10
            )
            disqualified = await capture(leads, "gone@example.com")
            await leads.DisqualifyLead(
                lead_pb.DisqualifyLeadRequest(
                    lead_id=disqualified,
                    reason=lead_types.DISQUALIFICATION_REASON_NO_BUDGET,
                ),
                timeout=10,
            )
            survivor = await capture(leads, "ana@example.com")
            duplicate = await capture(leads, "ana.work@example.com")
            await leads.MergeLeads(
                lead_pb.MergeLeadsRequest(
                    surviving_lead_id=survivor, merged_lead_id=duplicate
                ),
                timeout=10,
            )
        async with deal_service(tmp_path, nats_server.url, address) as (deal, stub):
            refusals = [
                (
                    "5b1f7c9e-3d4a-4e8b-9c2d-000000000001",
                    grpc.StatusCode.NOT_FOUND,
                    "does not exist",
                ),
                (disqualified, grpc.StatusCode.FAILED_PRECONDITION, "disqualified"),
                (duplicate, grpc.StatusCode.FAILED_PRECONDITION, survivor),
            ]
            for lead_id, code, says in refusals:
                before = await max_notification_id(deal)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.OpenDeal(open_request(lead_id, key="k"), timeout=10)
                assert raised.value.code() == code, raised.value.details()
                assert says in (raised.value.details() or "")
                assert await max_notification_id(deal) == before

            opened = await stub.OpenDeal(open_request(qualified, key="k"), timeout=10)
            again = await stub.OpenDeal(open_request(qualified, key="k"), timeout=10)
            for_survivor = await stub.OpenDeal(open_request(survivor), timeout=10)

            assert (opened.created, again.created) == (True, False)
            assert again.deal.deal_id == opened.deal.deal_id
            assert opened.deal.lead_id == qualified
            assert opened.deal.stage == types_pb2.DEAL_STAGE_DISCOVERY
            assert opened.deal.amount == Money(minor_units=12_000_00, currency="EUR")
            assert for_survivor.created
            listed = await stub.ListDealsForLead(
                pb.ListDealsForLeadRequest(lead_id=qualified), timeout=10
            )
            assert [d.deal_id for d in listed.deals] == [opened.deal.deal_id]
    finally:
        await lead.stop(grace=1.0)


# -- the lead service is down ----------------------------------------------------------


async def test_nobody_listening_is_unavailable_at_once(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    async with deal_service(tmp_path, nats_server.url, nobody) as (deal, stub):
        elapsed = await refused_unavailable(
            deal, stub, "0e8f5a52-4a0b-4d53-9b0e-1f6c2b7d9a10"
        )
        assert await max_notification_id(deal) == 0
    assert elapsed < LEAD_DEADLINE_SECONDS + 1  # refused connections fail fast


async def test_a_lead_service_that_never_answers_times_out_as_unavailable(
    nats_server: NatsServer, tmp_path: Path, silent_listener: str
) -> None:
    async with deal_service(tmp_path, nats_server.url, silent_listener) as (
        deal,
        stub,
    ):
        elapsed = await refused_unavailable(
            deal, stub, "0e8f5a52-4a0b-4d53-9b0e-1f6c2b7d9a10"
        )
        assert await max_notification_id(deal) == 0
    # it waited for the lead service's deadline, no less
    assert elapsed >= LEAD_DEADLINE_SECONDS - 0.1


async def test_a_stopped_lead_service_is_unavailable_until_it_returns(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    lead = await start_lead(tmp_path, nats_server.url)
    port = lead.server.port
    address = f"127.0.0.1:{port}"
    try:
        async with lead_client(address) as leads:
            lead_id = await capture(leads, "ana@example.com")
        async with deal_service(tmp_path, nats_server.url, address) as (deal, stub):
            first = await stub.OpenDeal(open_request(lead_id, key="first"), timeout=10)
            assert first.created

            await lead.stop(grace=1.0)
            await refused_unavailable(deal, stub, lead_id)
            # a retry of what already succeeded needs no answer from the lead service
            retry = await stub.OpenDeal(open_request(lead_id, key="first"), timeout=10)
            assert (retry.deal.deal_id, retry.created) == (first.deal.deal_id, False)

            lead = await start_lead(tmp_path, nats_server.url, port=port)

            async def opens() -> bool:
                try:
                    reply = await stub.OpenDeal(
                        open_request(lead_id, key="after"), timeout=10
                    )
                except grpc.aio.AioRpcError as error:
                    assert error.code() == UNAVAILABLE, error.details()
                    return False
                opened: bool = reply.deal.lead_id == lead_id
                return opened

            await eventually(opens, timeout=15, interval=0.2)
            listed = await stub.ListDealsForLead(
                pb.ListDealsForLeadRequest(lead_id=lead_id), timeout=10
            )
            assert len(listed.deals) == 2
    finally:
        await lead.stop(grace=1.0)
