"""The closed loop with the real services: lead, deal, consent and attribution write,
the projector follows the log, insights answers. Every process is started the way
`make run` starts it, and driven through gRPC only."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import nats
import pytest

from closedloop.attribution.v1 import attribution_service_pb2 as attribution_pb
from closedloop.attribution.v1 import attribution_service_pb2_grpc
from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.common.v1.money_pb2 import Money
from closedloop.consent.v1 import consent_service_pb2 as consent_pb
from closedloop.consent.v1 import consent_service_pb2_grpc
from closedloop.consent.v1 import types_pb2 as consent_types
from closedloop.deal.v1 import deal_service_pb2 as deal_pb
from closedloop.deal.v1 import deal_service_pb2_grpc
from closedloop.deal.v1 import types_pb2 as deal_types
from closedloop.insights.v1 import insights_service_pb2 as pb
from closedloop.insights.v1 import insights_service_pb2_grpc
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.protobuf import timestamp
from closedloop.testing.processes import ServiceProcess
from closedloop.testing.streams import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

SECRET = {"CLOSEDLOOP_SECRET_KEY": "e2e-secret-shared-by-all-services"}
EMAIL = "quinn.e2e@example.com"
NAME = "Quinn Marlowe-Espinosa"


def on(day: str) -> Any:
    return timestamp(datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC))


async def halt(service: ServiceProcess) -> None:
    """Stops a service that started (or half started); kills it if it hangs."""
    process = service.process
    try:
        await service.stop()
    except subprocess.TimeoutExpired:
        if process is not None:
            process.kill()
            process.wait()
        service.process = None


@pytest.fixture
async def running(
    own_nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[dict[str, ServiceProcess]]:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await nc.close()
    data = tmp_path / "data"
    lead = ServiceProcess("lead", data, own_nats_server.url, extra_env=dict(SECRET))
    await lead.start()
    peers = {**SECRET, "CLOSEDLOOP_LEAD_ADDRESS": lead.address}
    others = {
        "deal": ServiceProcess("deal", data, own_nats_server.url, extra_env=peers),
        "consent": ServiceProcess(
            "consent", data, own_nats_server.url, extra_env=peers
        ),
        "attribution": ServiceProcess(
            "attribution",
            data,
            own_nats_server.url,
            extra_env={**peers, "CLOSEDLOOP_ATTRIBUTION_TRAIN_INTERVAL_SECONDS": "0"},
        ),
        "insights": ServiceProcess(
            "insights", data, own_nats_server.url, extra_env=peers
        ),
    }
    projector_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")},
        **SECRET,
        "CLOSEDLOOP_DATA_DIR": str(data),
        "CLOSEDLOOP_NATS_URL": own_nats_server.url,
    }
    data.mkdir(parents=True, exist_ok=True)
    projector_log = (data / "projector.log").open("ab")
    projector = subprocess.Popen(
        [sys.executable, "-m", "services.projector"],
        env=projector_env,
        stdin=subprocess.DEVNULL,
        stdout=projector_log,
        stderr=projector_log,
    )
    try:
        await asyncio.gather(*(service.start() for service in others.values()))
        yield {"lead": lead, **others}
    finally:
        projector.send_signal(signal.SIGTERM)
        try:
            projector.wait(20)
        except subprocess.TimeoutExpired:
            projector.kill()
            projector.wait()
        for service in [lead, *others.values()]:
            await halt(service)
    assert projector.returncode == 0, (data / "projector.log").read_text()


async def test_the_loop_closes_from_first_touch_to_revenue_by_channel(
    running: dict[str, ServiceProcess],
) -> None:
    channels = {
        name: grpc.aio.insecure_channel(s.address) for name, s in running.items()
    }
    leads = lead_service_pb2_grpc.LeadServiceStub(channels["lead"])
    deals = deal_service_pb2_grpc.DealServiceStub(channels["deal"])
    consents = consent_service_pb2_grpc.ConsentServiceStub(channels["consent"])
    attribution = attribution_service_pb2_grpc.AttributionServiceStub(
        channels["attribution"]
    )
    insights = insights_service_pb2_grpc.InsightsServiceStub(channels["insights"])

    await leads.RecordTouchpoint(
        lead_pb.RecordTouchpointRequest(
            anonymous_id="e2e-visitor-1",
            source="google",
            medium="cpc",
            campaign="autumn-search",
            occurred_at=on("2026-09-01"),
            idempotency_key="touch-1",
        )
    )
    captured = await leads.CaptureLead(
        lead_pb.CaptureLeadRequest(
            anonymous_id="e2e-visitor-1",
            email=EMAIL,
            name=NAME,
            company="Marlowe Freight",
            source_system="web_form",
            occurred_at=on("2026-09-02"),
        )
    )
    lead_id = captured.lead.lead_id
    await consents.GrantConsent(
        consent_pb.GrantConsentRequest(
            subject_id=lead_id,
            email=EMAIL,
            purpose=consent_types.PURPOSE_NEWSLETTER,
            channel=consent_types.CHANNEL_EMAIL,
            source_system=consent_types.SOURCE_SYSTEM_WEB_FORM,
            method=consent_types.METHOD_FORM,
            occurred_at=on("2026-09-02"),
        )
    )
    await leads.QualifyLead(
        lead_pb.QualifyLeadRequest(
            lead_id=lead_id, score=80, occurred_at=on("2026-09-03")
        )
    )
    await leads.AcceptLead(
        lead_pb.AcceptLeadRequest(
            lead_id=lead_id, owner="rep", occurred_at=on("2026-09-04")
        )
    )
    opened = await deals.OpenDeal(
        deal_pb.OpenDealRequest(
            lead_id=lead_id,
            name=f"{NAME} freight deal",
            amount=Money(minor_units=500_000, currency="USD"),
            occurred_at=on("2026-09-05"),
        )
    )
    deal_id = opened.deal.deal_id
    await deals.WinDeal(
        deal_pb.WinDealRequest(deal_id=deal_id, closed_at=on("2026-09-20"))
    )
    await deals.RecordRevenue(
        deal_pb.RecordRevenueRequest(
            deal_id=deal_id,
            amount=Money(minor_units=500_000, currency="USD"),
            kind=deal_types.REVENUE_KIND_NEW,
            recognized_at=on("2026-09-20"),
        )
    )
    await attribution.RecordSpend(
        attribution_pb.RecordSpendRequest(
            channel="paid_search",
            campaign="autumn-search",
            amount=Money(minor_units=200_000, currency="USD"),
            period_start=timestamp(datetime(2026, 9, 1, tzinfo=UTC)),
            period_end=timestamp(datetime(2026, 10, 1, tzinfo=UTC)),
            idempotency_key="spend-1",
        )
    )

    async def revenue() -> pb.RevenueRow | None:
        try:
            reply = await insights.GetRevenueByChannel(
                pb.GetRevenueByChannelRequest(
                    model="linear",
                    period=pb.Period(from_month="2026-09", to_month="2026-09"),
                )
            )
        except grpc.aio.AioRpcError:
            return None
        rows = [r for r in reply.rows if r.channel == "paid_search"]
        return (
            rows[0]
            if rows and rows[0].revenue.minor_units and rows[0].spend.minor_units
            else None
        )

    search = await eventually(revenue, timeout=60, interval=0.25)
    assert (search.revenue.minor_units, search.spend.minor_units) == (500_000, 200_000)
    assert search.roi == pytest.approx(1.5)
    assert search.customers == 1.0

    async def journey() -> pb.GetCustomerJourneyResponse | None:
        reply = await insights.GetCustomerJourney(
            pb.GetCustomerJourneyRequest(email=EMAIL)
        )
        kinds = {e.kind for e in reply.entries}
        needed = {pb.ENTRY_KIND_REVENUE_RECOGNIZED, pb.ENTRY_KIND_CONSENT_GRANTED}
        return reply if needed <= kinds and reply.stage == "customer" else None

    found = await eventually(journey, timeout=30, interval=0.25)
    assert found.lead_id == lead_id
    assert found.anonymous_ids == ["e2e-visitor-1"]
    summaries = [e.summary for e in found.entries]
    assert summaries[0].startswith("touch paid_search / autumn-search")
    assert "stage -> opportunity" in summaries  # LeadConverted, learned from DealOpened
    assert summaries[-2:] == ["deal won 500000 USD", "revenue new 500000 USD"]
    times = [e.occurred_at.ToJsonString() for e in found.entries]
    assert times == sorted(times)

    funnel = await insights.GetFunnel(
        pb.GetFunnelRequest(period=pb.Period(from_month="2026-09", to_month="2026-09"))
    )
    (row,) = funnel.rows
    assert (row.channel, row.visitors, row.leads, row.mqls, row.sals, row.won) == (
        "paid_search",
        1,
        1,
        1,
        1,
        1,
    )
    consent = await insights.GetConsentStatus(pb.GetConsentStatusRequest(email=EMAIL))
    assert [s.state for s in consent.effective] == [
        consent_types.CONSENT_STATE_OPTED_IN
    ]

    async def settled() -> pb.ListProjectionsResponse | None:
        reply = await insights.ListProjections(pb.ListProjectionsRequest())
        ok = reply.log_position > 0 and all(
            p.state == pb.PROJECTION_STATE_ACTIVE and p.lag == 0
            for p in reply.projections
        )
        return reply if ok else None

    listed = await eventually(settled, timeout=30, interval=0.25)
    assert all(p.parked == 0 for p in listed.projections)
    for channel in channels.values():
        await channel.close()

    # The read models hold no personal field in the clear.
    read_db = running["lead"].data_dir / "projector" / "read.db"
    stored = b"".join(p.read_bytes() for p in read_db.parent.glob("read.db*"))
    assert EMAIL.encode() not in stored
    assert NAME.encode() not in stored
