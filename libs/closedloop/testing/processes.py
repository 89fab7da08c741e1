"""Services as real processes, started the way production starts them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from closedloop.grpckit.health import wait_healthy
from closedloop.natsserver import free_port


@dataclass
class ServiceProcess:
    """`python -m services.<name>` with its own data folder and port."""

    name: str
    data_dir: Path
    nats_url: str
    port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSEDLOOP_")}
        env.update(
            {
                "CLOSEDLOOP_DATA_DIR": str(self.data_dir),
                "CLOSEDLOOP_NATS_URL": self.nats_url,
                f"CLOSEDLOOP_{self.name.upper()}_GRPC_PORT": str(self.port),
                # A test's dashboard takes a free port, never the one of `make run`.
                "CLOSEDLOOP_INSIGHTS_HTTP_PORT": "0",
            }
        )
        env.update(self.extra_env)
        return env

    async def start(self, timeout: float = 30.0) -> ServiceProcess:
        if self.port == 0:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 - a quick spawn
            [sys.executable, "-m", f"services.{self.name}"],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        await wait_healthy(self.address, timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    async def stop(self, timeout: float = 20.0) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, timeout)
        self.process = None
        return code

    def log_text(self) -> str:
        path = self.data_dir / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
