"""Start `cervical-tf serve` as a child process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parents[1]


class ServerFailed(RuntimeError):
    """The server exited or did not become ready; the message holds its log."""


@dataclass(frozen=True)
class ServerProcess:
    """A started server: its base URL and its process (for tests that signal it themselves)."""

    url: str
    process: subprocess.Popen


@contextmanager
def running_server(arguments: Sequence[str], log_path: Path, startup_seconds: float = 120.0) -> Iterator[str]:
    """Yield the base URL of `cervical-tf serve ARGUMENTS` on 127.0.0.1 once /readyz answers 200.

    The server's output goes to `log_path`; it is stopped (terminate, then kill) on exit.
    """
    with server_process(arguments, log_path, startup_seconds) as server:
        yield server.url


@contextmanager
def server_process(
    arguments: Sequence[str], log_path: Path, startup_seconds: float = 120.0
) -> Iterator[ServerProcess]:
    """As `running_server`, yielding the process too; stopped on exit unless it has already ended."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "cervical_tf",
        "serve",
        *arguments,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path, startup_seconds)
        yield ServerProcess(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(url: str, process: subprocess.Popen, log_path: Path, startup_seconds: float) -> None:
    deadline = time.monotonic() + startup_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(
                f"the server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise ServerFailed(
        f"the server was not ready within {startup_seconds:.0f} s:\n{log_path.read_text(errors='replace')}"
    )
