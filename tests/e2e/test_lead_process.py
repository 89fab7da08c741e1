"""The lead service as a real process: crashes, health, reflection, gRPC only."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import nats
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from closedloop.bus.cloudevents import Envelope
from closedloop.bus.streams import StreamSettings, context_stream, provision_streams
from closedloop.eventstore.store import StoreLocation
from closedloop.lead.v1 import lead_service_pb2 as pb
from closedloop.lead.v1 import lead_service_pb2_grpc
from closedloop.testing.processes import ServiceProcess
from closedloop.testing.streams import eventually, read_stream
from services.lead.application import LeadStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from closedloop.natsserver import NatsServer

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

TOUCHPOINTS = 2000
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}


@pytest.fixture
async def lead(
    own_nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[ServiceProcess]:
    nc = await nats.connect(own_nats_server.url)
    await provision_streams(nc.jetstream(), StreamSettings())
    await nc.close()
    service = ServiceProcess("lead", tmp_path / "data", own_nats_server.url)
    await service.start()
    yield service
    if service.process is not None:
        await service.stop()


async def test_touchpoints_survive_sigkill_exactly_once(
    lead: ServiceProcess, own_nats_server: NatsServer
) -> None:
    """2,000 touchpoints, the service killed and restarted: 2,000 in store, stream."""
    channel = grpc.aio.insecure_channel(lead.address)
    stub = lead_service_pb2_grpc.LeadServiceStub(channel)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(TOUCHPOINTS):
        queue.put_nowait(i)
    done: dict[int, str] = {}
    failures = 0
    deadline = time.monotonic() + 240

    async def client() -> None:
        nonlocal failures
        while not queue.empty():
            i = queue.get_nowait()
            request = pb.RecordTouchpointRequest(
                anonymous_id=f"visitor-{i % 150}",
                source=random.choice(["google", "linkedin", "newsletter", "(direct)"]),
                medium=random.choice(["cpc", "organic", "email", ""]),
                campaign=f"campaign-{i % 7}",
                idempotency_key=f"touch-{i}",
            )
            while True:
                assert time.monotonic() < deadline, "the client could not finish"
                try:
                    reply = await stub.RecordTouchpoint(request, timeout=3)
                except grpc.aio.AioRpcError as error:
                    assert error.code() in RETRYABLE, error
                    failures += 1
                    await asyncio.sleep(0.05)
                    continue
                done[i] = reply.touchpoint_id
                break

    async def killer() -> None:
        for fraction in (0.2, 0.45, 0.7):
            while len(done) < TOUCHPOINTS * fraction:
                await asyncio.sleep(0.01)
            lead.kill()
            await asyncio.sleep(0.2)
            await lead.start()

    await asyncio.gather(*(client() for _ in range(24)), killer())
    await channel.close()
    assert len(done) == TOUCHPOINTS
    assert len(set(done.values())) == TOUCHPOINTS
    assert failures > 0, "the kills should have failed some calls"

    nc = await nats.connect(own_nats_server.url)
    js = nc.jetstream()
    subject = "closedloop.lead.v1.TouchpointRecorded"

    async def stream_count() -> bool:
        info = await js.stream_info(context_stream("lead"), subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0) == TOUCHPOINTS

    await eventually(stream_count, timeout=60)
    await lead.stop()
    messages = [
        m for m in await read_stream(js, context_stream("lead")) if m.subject == subject
    ]
    await nc.close()
    ids = [Envelope.from_headers(m.headers).event_id for m in messages]
    assert len(ids) == len(set(ids)) == TOUCHPOINTS

    location = StoreLocation.parse(f"sqlite:///{lead.data_dir / 'lead' / 'events.db'}")
    store = LeadStore(env=location.eventsourcing_env())
    try:
        recorded = [
            n
            for n in store.recorder.select_notifications(1, 1_000_000)
            if n.topic.endswith("TouchpointRecorded")
        ]
    finally:
        store.close()
    assert len(recorded) == TOUCHPOINTS


async def test_a_client_that_knows_only_the_address_can_discover_and_call(
    lead: ServiceProcess,
) -> None:
    async with grpc.aio.insecure_channel(lead.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service="closedloop.lead.v1.LeadService")
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask(
            request: reflection_pb2.ServerReflectionRequest,
        ) -> reflection_pb2.ServerReflectionResponse:
            call = reflection.ServerReflectionInfo(iter([request]))
            async for response in call:
                return response
            raise AssertionError("no reflection answer")

        listed = await ask(reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {s.name for s in listed.list_services_response.service}
        assert "closedloop.lead.v1.LeadService" in names
        assert "grpc.health.v1.Health" in names

        # Build the request and response types from the server's descriptors alone.
        files = await ask(
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="closedloop.lead.v1.LeadService"
            )
        )
        pool = descriptor_pool.DescriptorPool()
        pending = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in files.file_descriptor_response.file_descriptor_proto
        ]
        while pending:  # add dependencies first
            for proto in list(pending):
                with contextlib.suppress(TypeError, KeyError):
                    pool.Add(proto)
                    pending.remove(proto)
        service = pool.FindServiceByName("closedloop.lead.v1.LeadService")
        method = service.methods_by_name["CaptureLead"]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        response = await call(request_class(email="reflected@example.com", name="Ref"))
        assert response.created is True
        assert response.lead.email == "reflected@example.com"


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found


async def test_a_killed_service_leaves_no_outbox_worker_behind(
    lead: ServiceProcess,
) -> None:
    """The relay's outbox worker notices its service is gone and exits."""
    assert lead.process is not None
    service_pid = lead.process.pid

    async def worker_started() -> set[int]:
        return _children(service_pid)

    workers = await eventually(worker_started, timeout=60)
    lead.kill()

    async def workers_gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in workers)

    await eventually(workers_gone, timeout=10)
