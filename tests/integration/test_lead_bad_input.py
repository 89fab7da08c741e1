"""Bad requests against the real LeadService over gRPC: refused, named, unrecorded.

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

from closedloop.config import ServiceConfig
from closedloop.lead.v1 import lead_service_pb2 as pb
from closedloop.lead.v1 import lead_service_pb2_grpc, types_pb2
from closedloop.testing.pages import pages_of
from closedloop.testing.refusals import assert_refused
from services.lead.__main__ import bootstrap

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from closedloop.natsserver import NatsServer
    from closedloop.service import Service

pytestmark = [pytest.mark.nats, pytest.mark.asyncio(loop_scope="module")]

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

KNOWN_EMAIL = "known.lead@example.com"
DISQUALIFIED_EMAIL = "disqualified.lead@example.com"
UNKNOWN_LEAD_ID = "5b1f7c9e-3d4a-4e8b-9c2d-000000000001"
ANONYMOUS_ID = "visitor-7f3a"


@dataclass(frozen=True)
class Leads:
    """The leads created before the bad calls, for cases to refer to."""

    known: str
    disqualified: str


@dataclass
class Running:
    service: Service
    stub: lead_service_pb2_grpc.LeadServiceStub
    leads: Leads


# -- the service, once per store backend ---------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lead(
    module_store_url: str,
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Running]:
    data_dir = tmp_path_factory.mktemp("lead-data")
    config = ServiceConfig.from_env(
        "lead",
        {
            "CLOSEDLOOP_DATA_DIR": str(data_dir),
            "CLOSEDLOOP_NATS_URL": nats_server.url,
            "CLOSEDLOOP_LEAD_GRPC_PORT": "0",
            "CLOSEDLOOP_LEAD_STORE_URL": module_store_url,
        },
    )
    service = await bootstrap(config)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.server.port}"
        ) as channel:
            stub = lead_service_pb2_grpc.LeadServiceStub(channel)
            known = await stub.CaptureLead(
                pb.CaptureLeadRequest(email=KNOWN_EMAIL, name="Known Lead"), timeout=10
            )
            other = await stub.CaptureLead(
                pb.CaptureLeadRequest(email=DISQUALIFIED_EMAIL, name="Gone Lead"),
                timeout=10,
            )
            gone = await stub.DisqualifyLead(
                pb.DisqualifyLeadRequest(
                    lead_id=other.lead.lead_id,
                    reason=types_pb2.DISQUALIFICATION_REASON_BAD_FIT,
                ),
                timeout=10,
            )
            assert known.created
            assert known.lead.stage == types_pb2.LEAD_STAGE_LEAD
            assert gone.lead.stage == types_pb2.LEAD_STAGE_DISQUALIFIED
            leads = Leads(known=known.lead.lead_id, disqualified=other.lead.lead_id)
            # The bases the bad cases vary are valid, and the probe sees their events:
            for base in (_touch(), _touch(anonymous_id="", lead_id=leads.known)):
                before = await _max_notification_id(service)
                await stub.RecordTouchpoint(base, timeout=10)
                assert await _max_notification_id(service) > before
            yield Running(service=service, stub=stub, leads=leads)
    finally:
        await service.stop(grace=1.0)


# -- the cases -----------------------------------------------------------------------


def _ts(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _touch(**fields: Any) -> pb.RecordTouchpointRequest:
    """A valid touchpoint for an anonymous visitor, with `fields` changed."""
    request: dict[str, Any] = {
        "anonymous_id": ANONYMOUS_ID,
        "source": "google",
        "medium": "cpc",
        "campaign": "spring-launch",
        "interaction": types_pb2.INTERACTION_AD_CLICK,
    }
    request.update(fields)
    return pb.RecordTouchpointRequest(**request)


@dataclass(frozen=True)
class Case:
    method: str
    request: Callable[[Leads], Any]
    code: grpc.StatusCode
    #: INVALID_ARGUMENT: the offending field; otherwise a phrase the message must hold.
    field: str = ""
    says: str = ""


CASES = [
    # RecordTouchpoint
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(anonymous_id=""),
            INVALID,
            "anonymous_id",
        ),
        id="touch-neither-anonymous-nor-lead",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda leads: _touch(lead_id=leads.known),
            INVALID,
            "anonymous_id",
        ),
        id="touch-both-anonymous-and-lead",
    ),
    *(
        pytest.param(
            Case(
                "RecordTouchpoint",
                lambda _, junk=junk: _touch(anonymous_id=junk),  # type: ignore[misc]
                INVALID,
                "anonymous_id",
            ),
            id=f"touch-junk-anonymous-id-{junk}",
        )
        for junk in ("null", "undefined", "0000")
    ),
    pytest.param(
        Case("RecordTouchpoint", lambda _: _touch(source="s" * 257), INVALID, "source"),
        id="touch-source-too-long",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(campaign="spring\x00\x07launch"),
            INVALID,
            "campaign",
        ),
        id="touch-campaign-control-characters",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(occurred_at=_ts(datetime.now(UTC) + timedelta(days=2))),
            INVALID,
            "occurred_at",
        ),
        id="touch-occurred-at-future",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(occurred_at=_ts(datetime(1980, 6, 1, tzinfo=UTC))),
            INVALID,
            "occurred_at",
        ),
        id="touch-occurred-at-1980",
    ),
    pytest.param(
        Case("RecordTouchpoint", lambda _: _touch(channel=999), INVALID, "channel"),
        id="touch-unknown-channel",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(interaction=999),
            INVALID,
            "interaction",
        ),
        id="touch-unknown-interaction",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(idempotency_key="k" * 201),
            INVALID,
            "idempotency_key",
        ),
        id="touch-idempotency-key-too-long",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(attributes={f"key{i}": "value" for i in range(51)}),
            INVALID,
            "attributes",
        ),
        id="touch-51-attributes",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(anonymous_id="", lead_id="not-a-uuid"),
            INVALID,
            "lead_id",
        ),
        id="touch-lead-id-not-uuid",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(occurred_at=Timestamp(seconds=10**12)),
            INVALID,
            "occurred_at",
        ),
        id="touch-occurred-at-out-of-range",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(attributes={" ": "value"}),
            INVALID,
            "attributes.key",
        ),
        id="touch-attribute-blank-key",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(attributes={"utm_term": "t" * 257}),
            INVALID,
            "attributes[utm_term]",
        ),
        id="touch-attribute-value-too-long",
    ),
    pytest.param(
        Case(
            "RecordTouchpoint",
            lambda _: _touch(anonymous_id="", lead_id=UNKNOWN_LEAD_ID),
            NOT_FOUND,
            says="does not exist",
        ),
        id="touch-lead-id-unknown",
    ),
    # CaptureLead
    pytest.param(
        Case(
            "CaptureLead", lambda _: pb.CaptureLeadRequest(email=""), INVALID, "email"
        ),
        id="capture-empty-email",
    ),
    *(
        pytest.param(
            Case(
                "CaptureLead",
                lambda _, bad=bad: pb.CaptureLeadRequest(email=bad),  # type: ignore[misc]
                INVALID,
                "email",
            ),
            id=f"capture-malformed-email-{bad}",
        )
        for bad in ("a@", "@b.com", "a b@c.com", "a@b")
    ),
    pytest.param(
        Case(
            "CaptureLead",
            lambda _: pb.CaptureLeadRequest(email="a" * 60 + "@" + "b" * 190 + ".com"),
            INVALID,
            "email",
        ),
        id="capture-email-too-long",
    ),
    pytest.param(
        Case(
            "CaptureLead",
            lambda _: pb.CaptureLeadRequest(
                email="new.lead@example.com", name="n" * 257
            ),
            INVALID,
            "name",
        ),
        id="capture-name-too-long",
    ),
    pytest.param(
        Case(
            "CaptureLead",
            lambda _: pb.CaptureLeadRequest(
                email="new.lead@example.com", anonymous_id="anonymous"
            ),
            INVALID,
            "anonymous_id",
        ),
        id="capture-junk-anonymous-id",
    ),
    pytest.param(
        Case(
            "CaptureLead",
            lambda _: pb.CaptureLeadRequest(
                email=KNOWN_EMAIL, anonymous_id="undefined"
            ),
            INVALID,
            "anonymous_id",
        ),
        id="capture-existing-email-junk-anonymous-id",
    ),
    # QualifyLead
    pytest.param(
        Case(
            "QualifyLead",
            lambda _: pb.QualifyLeadRequest(lead_id=UNKNOWN_LEAD_ID, score=10),
            NOT_FOUND,
            says="does not exist",
        ),
        id="qualify-unknown-lead",
    ),
    pytest.param(
        Case(
            "QualifyLead",
            lambda leads: pb.QualifyLeadRequest(lead_id=leads.known, score=-1),
            INVALID,
            "score",
        ),
        id="qualify-negative-score",
    ),
    pytest.param(
        Case(
            "QualifyLead",
            lambda leads: pb.QualifyLeadRequest(lead_id=leads.known, score=1_000_001),
            INVALID,
            "score",
        ),
        id="qualify-score-too-high",
    ),
    pytest.param(
        Case(
            "QualifyLead",
            lambda _: pb.QualifyLeadRequest(lead_id="lead-42", score=10),
            INVALID,
            "lead_id",
        ),
        id="qualify-lead-id-not-uuid",
    ),
    pytest.param(
        Case(
            "QualifyLead",
            lambda leads: pb.QualifyLeadRequest(lead_id=leads.disqualified, score=10),
            PRECONDITION,
            says="disqualified",
        ),
        id="qualify-disqualified-lead",
    ),
    # AcceptLead
    pytest.param(
        Case(
            "AcceptLead",
            lambda leads: pb.AcceptLeadRequest(
                lead_id=leads.known, skip_qualification=True
            ),
            INVALID,
            "owner",
        ),
        id="accept-missing-owner",
    ),
    pytest.param(
        Case(
            "AcceptLead",
            lambda leads: pb.AcceptLeadRequest(lead_id=leads.known, owner="rep@corp"),
            PRECONDITION,
            says="skip_qualification",
        ),
        id="accept-not-mql",
    ),
    pytest.param(
        Case(
            "AcceptLead",
            lambda leads: pb.AcceptLeadRequest(
                lead_id=leads.disqualified, owner="rep@corp", skip_qualification=True
            ),
            PRECONDITION,
            says="disqualified",
        ),
        id="accept-disqualified-lead",
    ),
    # DisqualifyLead
    pytest.param(
        Case(
            "DisqualifyLead",
            lambda leads: pb.DisqualifyLeadRequest(lead_id=leads.known, reason=0),  # type: ignore[arg-type]
            INVALID,
            "reason",
        ),
        id="disqualify-reason-unspecified",
    ),
    pytest.param(
        Case(
            "DisqualifyLead",
            lambda leads: pb.DisqualifyLeadRequest(lead_id=leads.known, reason=99),  # type: ignore[arg-type]
            INVALID,
            "reason",
        ),
        id="disqualify-reason-unknown",
    ),
    pytest.param(
        Case(
            "DisqualifyLead",
            lambda leads: pb.DisqualifyLeadRequest(
                lead_id=leads.disqualified,
                reason=types_pb2.DISQUALIFICATION_REASON_SPAM,
            ),
            PRECONDITION,
            says="disqualified",
        ),
        id="disqualify-disqualified-lead",
    ),
    # ReopenLead
    pytest.param(
        Case(
            "ReopenLead",
            lambda leads: pb.ReopenLeadRequest(lead_id=leads.known),
            PRECONDITION,
            says="disqualified",
        ),
        id="reopen-not-disqualified",
    ),
    # MergeLeads
    pytest.param(
        Case(
            "MergeLeads",
            lambda leads: pb.MergeLeadsRequest(
                surviving_lead_id=leads.known, merged_lead_id=leads.known
            ),
            INVALID,
            "merged_lead_id",
        ),
        id="merge-into-itself",
    ),
    pytest.param(
        Case(
            "MergeLeads",
            lambda leads: pb.MergeLeadsRequest(
                surviving_lead_id=leads.known, merged_lead_id=UNKNOWN_LEAD_ID
            ),
            NOT_FOUND,
            says="merged_lead_id",
        ),
        id="merge-unknown-merged-lead",
    ),
    pytest.param(
        Case(
            "MergeLeads",
            lambda leads: pb.MergeLeadsRequest(
                surviving_lead_id="", merged_lead_id=leads.known
            ),
            INVALID,
            "surviving_lead_id",
        ),
        id="merge-missing-surviving-lead",
    ),
    # GetLead
    pytest.param(
        Case("GetLead", lambda _: pb.GetLeadRequest(lead_id=""), INVALID, "lead_id"),
        id="get-empty-lead-id",
    ),
    pytest.param(
        Case(
            "GetLead",
            lambda _: pb.GetLeadRequest(lead_id=UNKNOWN_LEAD_ID),
            NOT_FOUND,
            says="does not exist",
        ),
        id="get-unknown-lead",
    ),
    # GetJourney
    pytest.param(
        Case(
            "GetJourney",
            lambda _: pb.GetJourneyRequest(lead_id=UNKNOWN_LEAD_ID),
            NOT_FOUND,
            says="does not exist",
        ),
        id="journey-unknown-lead",
    ),
    pytest.param(
        Case(
            "GetJourney",
            lambda leads: pb.GetJourneyRequest(lead_id=leads.known, page_size=-1),
            INVALID,
            "page_size",
        ),
        id="journey-negative-page-size",
    ),
    pytest.param(
        Case(
            "GetJourney",
            lambda leads: pb.GetJourneyRequest(
                lead_id=leads.known,
                page_token="bm90IGEgdG9rZW4",  # noqa: S106 - a page token
            ),
            INVALID,
            "page_token",
        ),
        id="journey-junk-page-token",
    ),
    # FindLeadByEmail
    pytest.param(
        Case(
            "FindLeadByEmail",
            lambda _: pb.FindLeadByEmailRequest(email="not-an-email"),
            INVALID,
            "email",
        ),
        id="find-malformed-email",
    ),
    pytest.param(
        Case(
            "FindLeadByEmail",
            lambda _: pb.FindLeadByEmailRequest(email="nobody@example.com"),
            NOT_FOUND,
            says="no lead",
        ),
        id="find-unknown-email",
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
        case.request(running.leads),
        code=case.code,
        field=case.field,
        says=case.says,
    )


@pytest.mark.parametrize("case", CASES)
async def test_bad_request_is_refused_and_records_nothing(
    lead: Running, case: Case
) -> None:
    await _refused(lead, case)


@pytest.mark.parametrize(
    ("method", "request_", "every"),
    [
        pytest.param(
            "CaptureLead",
            pb.CaptureLeadRequest(
                email="not-an-email", name="bell\x07", idempotency_key="k" * 201
            ),
            ("email", "name", "idempotency_key"),
            id="capture",
        ),
        pytest.param(
            "RecordTouchpoint",
            pb.RecordTouchpointRequest(
                anonymous_id=ANONYMOUS_ID,
                channel=999,  # type: ignore[arg-type]
                interaction=999,  # type: ignore[arg-type]
                attributes={"": "empty key"},
            ),
            ("channel", "interaction", "attributes.key"),
            id="touchpoint",
        ),
        pytest.param(
            "MergeLeads",
            pb.MergeLeadsRequest(surviving_lead_id="lead 1", merged_lead_id="lead 2"),
            ("surviving_lead_id", "merged_lead_id"),
            id="merge",
        ),
    ],
)
async def test_every_bad_field_of_a_request_is_listed(
    lead: Running, method: str, request_: Any, every: tuple[str, ...]
) -> None:
    """One refusal lists each bad field; the message stays the first one's."""
    await assert_refused(
        lead.service.store,
        lead.stub,
        method,
        request_,
        code=INVALID,
        field=every[0],
        every=every,
    )


async def test_refused_leads_are_unchanged(lead: Running) -> None:
    """The leads the bad calls aimed at are as the setup left them."""
    known = await lead.stub.GetLead(pb.GetLeadRequest(lead_id=lead.leads.known))
    gone = await lead.stub.GetLead(pb.GetLeadRequest(lead_id=lead.leads.disqualified))
    assert known.lead.stage == types_pb2.LEAD_STAGE_LEAD
    assert known.lead.owner == ""
    assert known.lead.merged_lead_ids == []
    assert list(known.lead.anonymous_ids) == []
    assert gone.lead.stage == types_pb2.LEAD_STAGE_DISQUALIFIED


async def test_the_journey_comes_a_page_at_a_time(lead: Running) -> None:
    """Pages of any size add up to the whole journey, in its order."""
    anonymous_id = "visitor-paged"
    for days in (5, 1, 4, 2, 3):
        await lead.stub.RecordTouchpoint(
            _touch(
                anonymous_id=anonymous_id,
                occurred_at=_ts(datetime.now(UTC) - timedelta(days=days)),
            ),
            timeout=10,
        )
    captured = await lead.stub.CaptureLead(
        pb.CaptureLeadRequest(email="paged@example.com", anonymous_id=anonymous_id),
        timeout=10,
    )
    request = pb.GetJourneyRequest(lead_id=captured.lead.lead_id)
    whole = await lead.stub.GetJourney(request, timeout=10)
    assert len(whole.touchpoints) == 5
    assert whole.next_page_token == ""

    async def journey(page_size: int, token: str) -> pb.GetJourneyResponse:
        page: pb.GetJourneyResponse = await lead.stub.GetJourney(
            pb.GetJourneyRequest(
                lead_id=captured.lead.lead_id, page_size=page_size, page_token=token
            ),
            timeout=10,
        )
        return page

    for page_size in (1, 2, 5):
        pages = await pages_of(journey, page_size)
        assert len(pages) == -(-5 // page_size)
        assert [t for p in pages for t in p.touchpoints] == list(whole.touchpoints)
        assert {p.lead_id for p in pages} == {whole.lead_id}
