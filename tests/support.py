"""Helpers shared by the whole test suite."""

from __future__ import annotations

import os
import shutil

import pytest


def need_binary(name: str) -> str:
    """Return the path of an external tool a test relies on.

    Locally a missing tool skips the test, so a laptop without Debian's packages can still run
    the suite. Under CI (``CI=true``) `.ci/run` installs every tool, so a missing one is a broken
    set-up and fails loudly instead of silently skipping coverage.
    """
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not installed; .ci/run should have installed it")
    pytest.skip(f"{name} is not installed")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class MotoServer:
    """moto in server mode on a free 127.0.0.1 port, in its own process, over real HTTP.

    ``stop()`` and ``start()`` may be called again to simulate an AWS outage; the port stays
    the same so clients configured with ``endpoint_url`` reconnect when it comes back. moto's
    state is lost across a restart, as it would be on a fresh emulator.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._proc = None

    def start(self) -> MotoServer:
        import subprocess
        import sys
        import urllib.request

        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return True
            except OSError:
                return False

        wait_until(up, timeout=30, what="moto server to start")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except Exception:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def env(self) -> dict[str, str]:
        """Environment for a process (or boto3) that should talk to this emulator only."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "moto-secret-never-logged",  # moto accepts any
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
