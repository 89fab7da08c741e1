"""The client factory against real grpc.aio servers on free ports.

A call to another service carries the caller's correlation id and traceparent, and
ends no later than the call being served: a front service whose caller allows half
a second does not keep asking the next service for its own default of five.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import pytest

from closedloop.eventstore.metadata import EventMeta
from closedloop.grpckit import CORRELATION_ID_KEY, TRACEPARENT_KEY
from closedloop.grpckit.client import ServiceClient, on_behalf_of
from closedloop.grpckit.server import Registration, RunningServer, start_server
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SERVICE = "closedloop.lead.v1.LeadService"
DEFAULT_TIMEOUT = 5.0
#: The server measures what is left against its own clock: allow it a little.
SLACK = 0.1


@dataclass
class Heard:
    time_remaining: float | None
    metadata: dict[str, str]


@dataclass
class Downstream(lead_service_pb2_grpc.LeadServiceServicer):
    """Notes what each GetLead brought, then answers only after `delay`."""

    delay: float = 0.0
    heard: list[Heard] = field(default_factory=list)

    async def GetLead(  # noqa: N802 - the RPC's name
        self, request: lead_pb.GetLeadRequest, context: grpc.aio.ServicerContext
    ) -> lead_pb.GetLeadResponse:
        self.heard.append(
            Heard(
                context.time_remaining(),
                dict(context.invocation_metadata() or ()),
            )
        )
        await asyncio.sleep(self.delay)
        return lead_pb.GetLeadResponse()


@dataclass
class Front(lead_service_pb2_grpc.LeadServiceServicer):
    """Serves GetLead by asking the downstream service, as a port does."""

    downstream: ServiceClient[lead_service_pb2_grpc.LeadServiceStub]
    meta: EventMeta | None = None
    outcomes: list[tuple[grpc.StatusCode, float]] = field(default_factory=list)

    async def GetLead(  # noqa: N802 - the RPC's name
        self, request: lead_pb.GetLeadRequest, context: grpc.aio.ServicerContext
    ) -> lead_pb.GetLeadResponse:
        started = time.monotonic()
        try:
            async with on_behalf_of(self.meta):
                reply: lead_pb.GetLeadResponse = await self.downstream.stub().GetLead(
                    request
                )
        except grpc.aio.AioRpcError as error:
            self.outcomes.append((error.code(), time.monotonic() - started))
            raise
        except asyncio.CancelledError:
            # The server cancels a handler whose caller's deadline passed.
            self.outcomes.append(
                (grpc.StatusCode.CANCELLED, time.monotonic() - started)
            )
            raise
        self.outcomes.append((grpc.StatusCode.OK, time.monotonic() - started))
        return reply


@contextlib.asynccontextmanager
async def serve(
    servicer: lead_service_pb2_grpc.LeadServiceServicer,
) -> AsyncIterator[str]:
    server: RunningServer = await start_server(
        "127.0.0.1:0",
        [
            Registration(
                lead_service_pb2_grpc.add_LeadServiceServicer_to_server,
                servicer,
                SERVICE,
            )
        ],
    )
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(grace=0.5)


@contextlib.asynccontextmanager
async def client(
    address: str, default_timeout: float = DEFAULT_TIMEOUT
) -> AsyncIterator[ServiceClient[lead_service_pb2_grpc.LeadServiceStub]]:
    lead = ServiceClient(
        address, lead_service_pb2_grpc.LeadServiceStub, default_timeout=default_timeout
    )
    try:
        yield lead
    finally:
        await lead.close()


async def test_a_call_outside_any_served_call_gets_the_default_timeout() -> None:
    downstream = Downstream()  # type: ignore[abstract]
    async with serve(downstream) as address, client(address) as lead:
        await lead.stub().GetLead(lead_pb.GetLeadRequest())
        await lead.stub().GetLead(lead_pb.GetLeadRequest(), timeout=1.0)
    default, explicit = (heard.time_remaining for heard in downstream.heard)
    assert default is not None
    assert DEFAULT_TIMEOUT - 1.0 < default <= DEFAULT_TIMEOUT + SLACK
    assert explicit is not None
    assert explicit <= 1.0 + SLACK
    assert CORRELATION_ID_KEY not in downstream.heard[0].metadata


async def test_the_callers_ids_travel_with_the_call() -> None:
    meta = EventMeta.new()
    downstream = Downstream()  # type: ignore[abstract]
    async with serve(downstream) as address, client(address) as lead:
        async with on_behalf_of(meta):
            await lead.stub().GetLead(lead_pb.GetLeadRequest())
        await lead.stub().GetLead(lead_pb.GetLeadRequest())
    with_meta, without = (heard.metadata for heard in downstream.heard)
    assert with_meta[CORRELATION_ID_KEY] == meta.correlation_id
    assert with_meta[TRACEPARENT_KEY] == meta.traceparent
    assert CORRELATION_ID_KEY not in without
    assert TRACEPARENT_KEY not in without


async def test_the_served_calls_deadline_bounds_the_call_it_makes() -> None:
    downstream = Downstream(delay=30.0)  # type: ignore[abstract]
    meta = EventMeta.new()
    async with (
        serve(downstream) as downstream_address,
        client(downstream_address) as to_downstream,
    ):
        front = Front(to_downstream, meta)  # type: ignore[abstract]
        async with serve(front) as front_address, client(front_address) as to_front:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await to_front.stub().GetLead(lead_pb.GetLeadRequest(), timeout=0.5)
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 2.0
            await eventually_heard(front)
    [heard] = downstream.heard
    # Half a second (less what has passed), not the client's default of five.
    assert heard.time_remaining is not None
    assert heard.time_remaining <= 0.5 + SLACK
    assert heard.metadata[CORRELATION_ID_KEY] == meta.correlation_id
    [(code, elapsed)] = front.outcomes
    assert code in {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
    assert elapsed < 1.0


async def test_a_served_call_with_more_time_keeps_the_default() -> None:
    downstream = Downstream()  # type: ignore[abstract]
    async with (
        serve(downstream) as downstream_address,
        client(downstream_address, default_timeout=1.0) as to_downstream,
    ):
        front = Front(to_downstream)  # type: ignore[abstract]
        async with serve(front) as front_address, client(front_address) as to_front:
            await to_front.stub().GetLead(lead_pb.GetLeadRequest(), timeout=30)
    [heard] = downstream.heard
    assert heard.time_remaining is not None
    assert 0.0 < heard.time_remaining <= 1.0 + SLACK


async def eventually_heard(front: Front, timeout: float = 5.0) -> None:
    """Until the front service's own call has ended (it may end after the caller's)."""
    async with asyncio.timeout(timeout):
        while not front.outcomes:
            await asyncio.sleep(0.01)
