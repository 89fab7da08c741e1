"""The consent service's events on JetStream: the right subjects, nothing personal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import grpc
import nats
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.errors import NotFoundError

from closedloop.bus.cloudevents import Envelope, decode_payload
from closedloop.bus.streams import context_stream
from closedloop.config import ServiceConfig
from closedloop.consent.v1 import consent_service_pb2 as pb
from closedloop.consent.v1 import consent_service_pb2_grpc, events_pb2, types_pb2
from closedloop.eventstore.personal import TOKEN_PREFIX
from closedloop.identity import email_digest
from closedloop.testing.streams import eventually, read_stream
from services.consent.__main__ import bootstrap

if TYPE_CHECKING:
    from pathlib import Path

    from nats.js.api import RawStreamMsg

    from closedloop.natsserver import NatsServer

pytestmark = pytest.mark.nats

EMAIL = "ann.lima@example.com"
ORIGIN = "203.0.113.7"
SERVER_KEY = "consent-events-key-shared-by-the-services"
#: What the calls below publish; opening a record is not published.
PUBLISHED = [
    "ConsentGranted",
    "ConsentWithdrawn",
    "ConsentWithdrawn",
    "SubjectErased",
    "SubjectErased",
]


async def _published(server: NatsServer, names: list[str]) -> list[RawStreamMsg]:
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        stream = context_stream("consent")

        async def all_there() -> bool:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                return False  # not provisioned yet
            return info.state.messages >= len(names)

        await eventually(all_there)
        return await read_stream(js, stream)
    finally:
        await nc.close()


async def test_changes_and_erasure_are_published_without_personal_data(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    config = ServiceConfig.from_env(
        "consent",
        {
            "CLOSEDLOOP_DATA_DIR": str(tmp_path),
            "CLOSEDLOOP_NATS_URL": own_nats_server.url,
            "CLOSEDLOOP_CONSENT_GRPC_PORT": "0",
            "CLOSEDLOOP_SECRET_KEY": SERVER_KEY,
        },
    )
    lead_id = str(uuid.uuid4())
    service = await bootstrap(config)
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{service.server.port}"
        ) as channel:
            stub = consent_service_pb2_grpc.ConsentServiceStub(channel)
            before_grant = Timestamp()
            before_grant.FromDatetime(datetime.now(UTC))  # microseconds, as stored
            granted = await stub.GrantConsent(
                pb.GrantConsentRequest(
                    subject_id=EMAIL,
                    purpose=types_pb2.PURPOSE_NEWSLETTER,
                    channel=types_pb2.CHANNEL_EMAIL,
                    source_system=types_pb2.SOURCE_SYSTEM_WEB_FORM,
                    method=types_pb2.METHOD_DOUBLE_OPT_IN_CONFIRMED,
                    evidence=types_pb2.Evidence(
                        notice_version="privacy-2024-02", request_origin=ORIGIN
                    ),
                ),
                timeout=10,
            )
            await stub.RecordGlobalPrivacyControl(
                pb.RecordGlobalPrivacyControlRequest(subject_id=lead_id, email=EMAIL),
                timeout=10,
            )
            answer = await stub.CheckConsent(
                pb.CheckConsentRequest(
                    subject_id=lead_id,
                    email=EMAIL,
                    purpose=types_pb2.PURPOSE_NEWSLETTER,
                    channel=types_pb2.CHANNEL_EMAIL,
                ),
                timeout=10,
            )
            assert answer.allowed is True
            assert answer.state == types_pb2.CONSENT_STATE_OPTED_IN
            assert answer.decided_by.change_id == granted.change_id
            assert answer.decided_by.method == types_pb2.METHOD_DOUBLE_OPT_IN_CONFIRMED
            assert answer.decided_by.evidence.request_origin == ORIGIN
            # what we believed just before the grant was recorded: never asked
            believed = await stub.CheckConsent(
                pb.CheckConsentRequest(
                    subject_id=EMAIL,
                    purpose=types_pb2.PURPOSE_NEWSLETTER,
                    channel=types_pb2.CHANNEL_EMAIL,
                    believed_at=before_grant,
                ),
                timeout=10,
            )
            assert believed.allowed is False
            assert believed.state == types_pb2.CONSENT_STATE_NOT_OPTED
            assert not believed.HasField("decided_by")
            assert believed.at == believed.believed_at == before_grant
            erased = await stub.EraseSubject(
                pb.EraseSubjectRequest(subject_id=lead_id, email=EMAIL), timeout=10
            )
            assert erased.created is True
        messages = await _published(own_nats_server, PUBLISHED)
    finally:
        await service.stop(grace=5.0)

    digest = email_digest(SERVER_KEY.encode(), EMAIL)
    assert [m.subject for m in messages] == [
        f"closedloop.consent.v1.{name}" for name in PUBLISHED
    ]
    decoded = []
    for message in messages:
        envelope = Envelope.from_headers(message.headers)
        assert envelope.event_type == message.subject
        assert envelope.source == "/closedloop/consent"
        assert message.data is not None
        assert EMAIL.encode() not in message.data
        assert ORIGIN.encode() not in message.data
        decoded.append(decode_payload(envelope.event_type, message.data))

    first = decoded[0]
    assert isinstance(first, events_pb2.ConsentGranted)
    assert first.change_id == granted.change_id
    assert first.email.startswith(TOKEN_PREFIX)
    assert first.evidence.request_origin.startswith(TOKEN_PREFIX)
    assert first.evidence.notice_version == "privacy-2024-02"
    assert first.email_digest == digest
    gpc = decoded[1:3]
    assert [(m.purpose, m.lead_id, m.email_digest) for m in gpc] == [
        (types_pb2.PURPOSE_THIRD_PARTY_SHARING, lead_id, digest),
        (types_pb2.PURPOSE_PROFILING, lead_id, digest),
    ]
    tombstones = decoded[3:]
    assert all(isinstance(m, events_pb2.SubjectErased) for m in tombstones)
    assert {(m.lead_id, m.email_digest) for m in tombstones} == {
        (lead_id, digest),
        ("", digest),
    }
