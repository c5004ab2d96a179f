"""Run ``python -m daemon`` as a real process and talk to it over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess:
    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        log: Path,
        wrapper: Sequence[str] = (),
    ) -> None:
        """``wrapper`` comes before the interpreter (``unshare ... --``, say)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("UPCHECK_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "daemon", "--listen", f"127.0.0.1:{self.port}", *args],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._listening, timeout=30, what="the daemon to listen")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited early:\n{self.log()}")
        try:
            self.get("/health")
            return True
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def get_no_redirect(self, path: str) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics as {'name{labels}': value}."""
        _, _, body = self.get("/metrics")
        samples = {}
        for line in body.decode().split("\n"):  # the format's only line end (a label may hold NEL)
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def sample(self, key: str) -> float | None:
        return self.metrics().get(key)

    def results(self) -> dict:
        status, _, body = self.get("/results")
        assert status == 200, body
        return json.loads(body)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Signal the daemon; returns (exit code, seconds it took to exit)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode, time.monotonic() - started

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
