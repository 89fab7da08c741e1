"""`make run`: NATS, the streams and every service on one machine, stopped together.

Starts nats-server (JetStream, data under ./var/nats) unless CLOSEDLOOP_NATS_URL
points at an existing one, provisions the streams, starts each service as its own
process, prints the addresses, and on Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from closedloop import bus
from closedloop.bus.streams import LOG_STREAM, StreamSettings, provision_streams
from closedloop.config import ProcessEnv, ServiceConfig, redacted_url
from closedloop.grpckit.health import wait_healthy
from closedloop.natsserver import NatsServer
from closedloop.readmodels.common import ReadStoreEnv
from services.insights.web import dashboard_url

#: The processes `make run` starts, in order: (name, module).
SERVICES: tuple[tuple[str, str], ...] = (
    ("lead", "services.lead"),
    ("deal", "services.deal"),
    ("consent", "services.consent"),
    ("attribution", "services.attribution"),
    ("projector", "services.projector"),
    ("insights", "services.insights"),
)
#: Processes that answer gRPC health checks (the projector only follows the log).
GRPC_SERVICES = ("lead", "deal", "consent", "attribution", "insights")


def read_store(env: dict[str, str]) -> str:
    return ReadStoreEnv.from_env(env).read_store_url()


def banner(
    env: dict[str, str], nats_url: str, streams: list[str], names: list[str]
) -> list[str]:
    """What `make run` prints once everything answers; URLs without credentials."""
    data_dir = ProcessEnv.from_env(env).data_dir
    lines = [
        "closedloop is running:",
        f"  NATS JetStream   {redacted_url(nats_url)}   streams: {', '.join(streams)}",
    ]
    for name in names:
        if name == "projector":
            lines.append(
                f"  {name:<16} follows {LOG_STREAM}"
                f"   read models: {redacted_url(read_store(env))}"
            )
            continue
        service = ServiceConfig.from_env(name, env)
        where = (
            "reads the read models"
            if name == "insights"
            else f"store: {redacted_url(service.store_url)}"
        )
        lines.append(f"  {name:<16} grpc://{service.grpc_address}   {where}")
    lines += [
        f"  {'dashboard':<16} {dashboard_url(env)}",
        f"  data and logs    {data_dir}",
        "Press Ctrl-C to stop.",
    ]
    return lines


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - this is the command's own output


async def _provision(url: str, settings: StreamSettings) -> list[str]:
    nc = await bus.connect(url, name="closedloop-devrun", max_reconnect_attempts=5)
    try:
        return await provision_streams(nc.jetstream(), settings)
    finally:
        await nc.close()


def main() -> int:  # noqa: C901, PLR0912 - one linear start-up and shutdown
    settings = ProcessEnv.from_env()
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CLOSEDLOOP_DATA_DIR=str(data_dir))
    nats_server: NatsServer | None = None
    nats_url = settings.nats_url
    if "nats_url" not in settings.model_fields_set:  # not given: start our own
        parts = urlsplit(nats_url)
        nats_server = NatsServer(
            store_dir=data_dir / "nats",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 14222,
        )
        nats_server.start()
        env["CLOSEDLOOP_NATS_URL"] = nats_url
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        config = ServiceConfig.from_env("lead", env)
        streams = asyncio.run(
            _provision(
                nats_url,
                StreamSettings(config.stream_replicas, config.duplicate_window_seconds),
            )
        )
        (data_dir / "logs").mkdir(exist_ok=True)
        for name, module in SERVICES:
            log_file = (data_dir / "logs" / f"{name}.log").open("ab")
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", module],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            )
            children.append((name, process))
        for name, _ in children:
            if name in GRPC_SERVICES:
                service = ServiceConfig.from_env(name, env)
                asyncio.run(wait_healthy(service.grpc_address))
        for line in banner(env, nats_url, streams, [name for name, _ in children]):
            _say(line)
        while not stopping:
            for name, process in children:
                if process.poll() is not None:
                    _say(
                        f"{name} exited with {process.returncode}; see {data_dir}/logs"
                    )
                    stopping = True
            time.sleep(0.2)
        return 0
    finally:
        for _, process in reversed(children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(children):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if nats_server is not None:
            nats_server.stop()
        _say("closedloop stopped.")


if __name__ == "__main__":
    sys.exit(main())
