"""The generated certificates against a real grpc.aio server requiring mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from closedloop.trust import local, tls


class RecordingHealth(HealthServicer):  # type: ignore[misc]
    """The standard health service, noting the SPIFFE id each call's peer proved."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[str | None] = []
        self.auth_contexts: list[dict[str, list[bytes]]] = []

    async def Check(  # noqa: N802 - the generated name
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> health_pb2.HealthCheckResponse:
        self.peers.append(tls.peer_spiffe_id(context))
        self.auth_contexts.append(context.auth_context())
        return await super().Check(request, context)


Server = tuple[int, "RecordingHealth"]


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> local.LocalTrust:
    return local.ensure_local_trust(tmp_path_factory.mktemp("data") / "trust")


@pytest.fixture
async def lead_server(
    trust: local.LocalTrust,
) -> AsyncIterator[tuple[int, RecordingHealth]]:
    """The lead service's certificate on port 0, every client must present one."""
    server = grpc.aio.server()
    health = RecordingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_secure_port("127.0.0.1:0", trust.server_credentials("lead"))
    await server.start()
    yield port, health
    await server.stop(None)


async def check(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]] = (),
) -> health_pb2.HealthCheckResponse:
    channel = (
        grpc.aio.secure_channel(target, credentials, options=options)
        if credentials
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)


async def assert_refused(
    server: Server,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]] = (),
) -> None:
    """The handshake fails, so the call never reaches the servicer."""
    port, health = server
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check(f"localhost:{port}", credentials, options)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert health.peers == []


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_service_with_its_certificate_is_served_and_named(
    trust: local.LocalTrust, lead_server: Server, host: str
) -> None:
    port, health = lead_server
    reply = await check(f"{host}:{port}", trust.channel_credentials("deal"))

    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert health.peers == ["spiffe://closedloop/deal"]
    assert tls.service_of(health.peers[0]) == "deal"
    auth = health.auth_contexts[0]
    assert auth["transport_security_type"] == [b"ssl"]
    assert b"spiffe://closedloop/deal" in auth["x509_subject_alternative_name"]


async def test_the_server_is_checked_against_the_name_the_client_dialled(
    trust: local.LocalTrust, lead_server: Server
) -> None:
    assert tls.spiffe_id(trust.services["lead"].certificate.read_bytes()) == (
        "spiffe://closedloop/lead"
    )
    await assert_refused(
        lead_server,
        trust.channel_credentials("deal"),
        [("grpc.ssl_target_name_override", "lead.elsewhere.example")],
    )


async def test_a_client_without_a_certificate_is_refused(
    trust: local.LocalTrust, lead_server: Server
) -> None:
    no_certificate = tls.channel_credentials(ca_certificate=trust.ca_certificate)
    await assert_refused(lead_server, no_certificate)


async def test_a_plaintext_client_is_refused(lead_server: Server) -> None:
    await assert_refused(lead_server, None)


@pytest.fixture
def stranger(tmp_path: Path) -> local.LocalTrust:
    """Trust material of the same shape made elsewhere: another authority."""
    return local.ensure_local_trust(tmp_path / "other" / "trust")


async def test_a_certificate_of_another_authority_is_refused(
    trust: local.LocalTrust, lead_server: Server, stranger: local.LocalTrust
) -> None:
    impostor = tls.channel_credentials(
        ca_certificate=trust.ca_certificate,
        certificate=stranger.services["consent"].certificate,
        private_key=stranger.services["consent"].private_key,
    )
    await assert_refused(lead_server, impostor)


async def test_a_client_trusting_another_authority_refuses_the_server(
    lead_server: Server, stranger: local.LocalTrust
) -> None:
    await assert_refused(lead_server, stranger.channel_credentials("deal"))
