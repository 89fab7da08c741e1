"""The attribution service's port to the lead context, against a real lead service."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import grpc
import pytest

from closedloop.config import ServiceConfig
from closedloop.errors import Unavailable
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.natsserver import free_port
from closedloop.protobuf import timestamp
from services.attribution import lead_journeys
from services.attribution.lead_journeys import JOURNEY_PAGE_SIZE, GrpcLeadJourneys
from services.lead.__main__ import bootstrap as lead_bootstrap

if TYPE_CHECKING:
    from pathlib import Path

    from closedloop.natsserver import NatsServer

pytestmark = pytest.mark.nats

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("page_size", [JOURNEY_PAGE_SIZE, 3, 1])
async def test_the_journey_comes_from_the_lead_service(
    nats_server: NatsServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    page_size: int,
) -> None:
    """The whole journey, in order, however many pages it takes."""
    monkeypatch.setattr(lead_journeys, "JOURNEY_PAGE_SIZE", page_size)
    config = ServiceConfig.from_env(
        "lead",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path),
            "CLOSEDLOOP_NATS_URL": nats_server.url,
            "CLOSEDLOOP_LEAD_GRPC_PORT": "0",
        },
    )
    lead = await lead_bootstrap(config)
    address = f"127.0.0.1:{lead.server.port}"
    journeys = GrpcLeadJourneys(address, deadline=1.0)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = lead_service_pb2_grpc.LeadServiceStub(channel)
            anonymous_id = f"cookie-{uuid.uuid4().hex[:8]}"
            for days, source, medium, campaign in (
                (3, "google", "cpc", "brand"),
                (1, "linkedin", "cpc", "launch"),
                (3, "", "", ""),
            ):
                await stub.RecordTouchpoint(
                    lead_pb.RecordTouchpointRequest(
                        anonymous_id=anonymous_id,
                        source=source,
                        medium=medium,
                        campaign=campaign,
                        occurred_at=timestamp(T0 + timedelta(days=days)),
                    )
                )
            captured = await stub.CaptureLead(
                lead_pb.CaptureLeadRequest(
                    anonymous_id=anonymous_id,
                    email=f"{anonymous_id}@example.com",
                    occurred_at=timestamp(T0 + timedelta(days=5)),
                )
            )
            lead_id = uuid.UUID(captured.lead.lead_id)
            await stub.RecordTouchpoint(
                lead_pb.RecordTouchpointRequest(
                    lead_id=str(lead_id),
                    channel=lead_types.CHANNEL_EVENTS,
                    occurred_at=timestamp(T0 + timedelta(days=6)),
                )
            )

        journey = await journeys.journey(lead_id)
        assert journey is not None
        assert journey.lead_id == lead_id
        assert journey.created_at == T0 + timedelta(days=5)
        assert [(t.channel, t.campaign) for t in journey.touches] == [
            ("paid_social", "launch"),
            ("paid_search", "brand"),
            ("direct", None),
            ("events", None),
        ]
        # Equal business times keep the lead service's order.
        assert [t.recorded_order for t in journey.touches] == [0, 1, 2, 3]
        assert await journeys.journey(uuid.uuid4()) is None
    finally:
        await journeys.close()
        await lead.stop(grace=1.0)


async def test_no_answer_is_unavailable() -> None:
    journeys = GrpcLeadJourneys(f"127.0.0.1:{free_port()}", deadline=0.5)
    try:
        with pytest.raises(Unavailable, match="retry"):
            await journeys.journey(uuid.uuid4())
    finally:
        await journeys.close()


class _SlowPagesLead(lead_service_pb2_grpc.LeadServiceServicer):
    """A lead service that answers a journey one touch a page, each page slowly."""

    def __init__(self, lead_id: uuid.UUID, pages: int, delay: float) -> None:
        self.lead_id = lead_id
        self.pages = pages
        self.delay = delay

    async def GetLead(  # noqa: N802 - the RPC's name
        self, request: lead_pb.GetLeadRequest, context: object
    ) -> lead_pb.GetLeadResponse:
        return lead_pb.GetLeadResponse(
            lead=lead_pb.Lead(lead_id=str(self.lead_id), created_at=timestamp(T0))
        )

    async def GetJourney(  # noqa: N802 - the RPC's name
        self, request: lead_pb.GetJourneyRequest, context: object
    ) -> lead_pb.GetJourneyResponse:
        await asyncio.sleep(self.delay)
        page = int(request.page_token or "0")
        return lead_pb.GetJourneyResponse(
            touchpoints=[
                lead_types.Touchpoint(
                    touchpoint_id=f"t{page}",
                    channel=lead_types.CHANNEL_EVENTS,
                    occurred_at=timestamp(T0 + timedelta(days=page)),
                )
            ],
            next_page_token=str(page + 1) if page + 1 < self.pages else "",
        )


async def test_a_journey_of_many_pages_gets_the_time_its_pages_need() -> None:
    """Each call is bounded by its deadline, not the whole walk by one call's."""
    lead_id = uuid.uuid4()
    server = grpc.aio.server()
    lead_service_pb2_grpc.add_LeadServiceServicer_to_server(
        _SlowPagesLead(lead_id, pages=12, delay=0.25),  # type: ignore[abstract]
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    journeys = GrpcLeadJourneys(f"127.0.0.1:{port}", deadline=1.0)
    try:
        journey = await journeys.journey(lead_id)
        assert journey is not None
        assert [t.touchpoint_id for t in journey.touches] == [
            f"t{page}" for page in range(12)
        ]
    finally:
        await journeys.close()
        await server.stop(None)
