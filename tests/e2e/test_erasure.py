"""Erasure end to end: lead, deal and consent as real processes over real NATS."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import nats
import pytest

from closedloop.bus.streams import StreamSettings, provision_streams
from closedloop.common.v1.money_pb2 import Money
from closedloop.consent.v1 import consent_service_pb2 as consent_pb
from closedloop.consent.v1 import consent_service_pb2_grpc, types_pb2
from closedloop.deal.v1 import deal_service_pb2 as deal_pb
from closedloop.deal.v1 import deal_service_pb2_grpc
from closedloop.lead.v1 import lead_service_pb2 as lead_pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.lead.v1 import types_pb2 as lead_types
from closedloop.testing.processes import ServiceProcess
from closedloop.testing.streams import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]


@pytest.fixture
async def services(
    own_nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[dict[str, ServiceProcess]]:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await nc.close()
    data = tmp_path / "data"
    common = {"CLOSEDLOOP_SECRET_KEY": "test-secret-shared-by-all-services"}
    lead = await ServiceProcess(
        "lead", data, own_nats_server.url, extra_env=common
    ).start()
    consent = await ServiceProcess(
        "consent", data, own_nats_server.url, extra_env=common
    ).start()
    deal = await ServiceProcess(
        "deal",
        data,
        own_nats_server.url,
        extra_env={**common, "CLOSEDLOOP_LEAD_ADDRESS": lead.address},
    ).start()
    running = {"lead": lead, "deal": deal, "consent": consent}
    yield running
    for service in running.values():
        await service.stop()


def files_under(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("*") if p.is_file()]


def holders_of(needles: list[bytes], files: list[Path]) -> list[str]:
    found = []
    for path in files:
        data = path.read_bytes()
        found.extend(f"{path.name}: {n!r}" for n in needles if n in data)
    return found


def subject_keys(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {
            row[0]
            for row in conn.execute("SELECT subject_id FROM closedloop_subject_keys")
        }


async def test_erased_person_cannot_be_read_anywhere(
    services: dict[str, ServiceProcess], own_nats_server: NatsServer
) -> None:
    marker = uuid.uuid4().hex[:10]
    email = f"erin.{marker}@example.com"
    name = f"Erin Quillfeather{marker}"
    origin = f"198.51.100.23 Erin-{marker}-laptop"
    anonymous_id = f"cookie-{uuid.uuid4().hex[:8]}"

    lead_channel = grpc.aio.insecure_channel(services["lead"].address)
    deal_channel = grpc.aio.insecure_channel(services["deal"].address)
    consent_channel = grpc.aio.insecure_channel(services["consent"].address)
    leads = lead_service_pb2_grpc.LeadServiceStub(lead_channel)
    deals = deal_service_pb2_grpc.DealServiceStub(deal_channel)
    consents = consent_service_pb2_grpc.ConsentServiceStub(consent_channel)

    # Before the lead exists: a touch and a consent given with the email.
    await leads.RecordTouchpoint(
        lead_pb.RecordTouchpointRequest(
            anonymous_id=anonymous_id,
            source="linkedin",
            medium="cpc",
            idempotency_key="t1",
        )
    )
    evidence = types_pb2.Evidence(
        notice_version="privacy-2026-01", request_origin=origin
    )
    await consents.GrantConsent(
        consent_pb.GrantConsentRequest(
            subject_id=email,
            purpose=types_pb2.PURPOSE_NEWSLETTER,
            channel=types_pb2.CHANNEL_EMAIL,
            source_system=types_pb2.SOURCE_SYSTEM_WEB_FORM,
            method=types_pb2.METHOD_FORM,
            evidence=evidence,
        )
    )
    captured = await leads.CaptureLead(
        lead_pb.CaptureLeadRequest(
            anonymous_id=anonymous_id, email=email, name=name, company="Acme Rockets"
        )
    )
    lead_id = captured.lead.lead_id
    await consents.GrantConsent(
        consent_pb.GrantConsentRequest(
            subject_id=lead_id,
            email=email,
            purpose=types_pb2.PURPOSE_MARKETING_EMAIL,
            channel=types_pb2.CHANNEL_EMAIL,
            source_system=types_pb2.SOURCE_SYSTEM_CRM,
            method=types_pb2.METHOD_SALES_REP,
            evidence=evidence,
        )
    )
    await leads.QualifyLead(lead_pb.QualifyLeadRequest(lead_id=lead_id, score=80))
    opened = await deals.OpenDeal(
        deal_pb.OpenDealRequest(
            lead_id=lead_id,
            name=f"{name} platform deal",
            amount=Money(minor_units=1_200_000, currency="USD"),
        )
    )
    deal_id = opened.deal.deal_id

    # The lead learns of the conversion from DealOpened, through NATS.
    async def converted() -> bool:
        lead = (await leads.GetLead(lead_pb.GetLeadRequest(lead_id=lead_id))).lead
        return (
            lead.stage == lead_types.LEAD_STAGE_OPPORTUNITY and deal_id in lead.deal_ids
        )

    await eventually(converted, timeout=30)

    before_lead = (await leads.GetLead(lead_pb.GetLeadRequest(lead_id=lead_id))).lead
    assert (before_lead.email, before_lead.name) == (email, name)
    before_journey = await leads.GetJourney(lead_pb.GetJourneyRequest(lead_id=lead_id))
    before_history = await consents.GetConsentHistory(
        consent_pb.GetConsentHistoryRequest(subject_id=lead_id, email=email)
    )
    assert origin in str(before_history)
    before_deal = (await deals.GetDeal(deal_pb.GetDealRequest(deal_id=deal_id))).deal
    assert name in before_deal.name

    await consents.EraseSubject(
        consent_pb.EraseSubjectRequest(subject_id=lead_id, email=email)
    )

    async def erased_everywhere() -> bool:
        lead = (await leads.GetLead(lead_pb.GetLeadRequest(lead_id=lead_id))).lead
        deal = (await deals.GetDeal(deal_pb.GetDealRequest(deal_id=deal_id))).deal
        return bool(lead.erased and deal.personal_data_erased)

    await eventually(erased_everywhere, timeout=30)

    after_lead = (await leads.GetLead(lead_pb.GetLeadRequest(lead_id=lead_id))).lead
    assert (after_lead.email, after_lead.name) == ("", "")
    assert after_lead.stage == before_lead.stage
    after_journey = await leads.GetJourney(lead_pb.GetJourneyRequest(lead_id=lead_id))
    assert len(after_journey.touchpoints) == len(before_journey.touchpoints) == 1
    after_deal = (await deals.GetDeal(deal_pb.GetDealRequest(deal_id=deal_id))).deal
    assert name not in after_deal.name
    assert after_deal.amount == before_deal.amount
    after_history = await consents.GetConsentHistory(
        consent_pb.GetConsentHistoryRequest(subject_id=lead_id, email=email)
    )
    assert email not in str(after_history)
    assert origin not in str(after_history)
    assert len(after_history.changes) == len(before_history.changes)
    for channel in (lead_channel, deal_channel, consent_channel):
        await channel.close()

    # Stop everything so that every byte is on disk, then search the disk.
    for service in services.values():
        await service.stop()
    await asyncio.to_thread(own_nats_server.stop)
    data = services["lead"].data_dir
    stores = [p for p in files_under(data) if ".db" in p.name]
    assert {p.parent.name for p in stores} >= {"lead", "deal", "consent"}
    stream_files = files_under(own_nats_server.store_dir / "jetstream")
    assert stream_files
    needles = [email.encode(), name.encode(), origin.encode()]
    assert holders_of(needles, stores + stream_files) == []
    # The keys that could decrypt the tokens are gone in every service.
    assert lead_id not in subject_keys(data / "lead" / "events.db")
    assert deal_id not in subject_keys(data / "deal" / "events.db")
