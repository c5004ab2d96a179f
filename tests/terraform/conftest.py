"""Fixtures shared by the Terraform tests: the terraform binary and an offline set-up for it."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import need_binary
from tests.terraform import tf


@dataclass(frozen=True)
class Terraform:
    """A terraform binary plus the offline CLI configuration every run uses."""

    binary: str
    cli_config: Path
    scratch: Path

    def env(self, name: str) -> dict[str, str]:
        """Environment for one working copy; each gets its own TF_DATA_DIR."""
        data_dir = self.scratch / f"data-{name}"
        data_dir.mkdir(exist_ok=True)
        return tf.base_env(self.cli_config, data_dir)

    def run(self, args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300):
        return tf.run(self.binary, args, cwd, env, timeout)


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    binary = need_binary("terraform")
    mirror = tf.need_provider_mirror()
    scratch = tmp_path_factory.mktemp("terraform")
    return Terraform(binary, tf.write_cli_config(scratch, mirror), scratch)


@pytest.fixture(scope="session")
def initialized_copy(terraform: Terraform, tmp_path_factory: pytest.TempPathFactory):
    """A copy of ops/terraform after `terraform init -backend=false` from the local mirror."""
    workdir = tf.copy_module(tmp_path_factory.mktemp("validate") / "stack")
    env = terraform.env("validate")
    terraform.run(["init", "-backend=false", "-input=false"], workdir, env, timeout=180)
    return workdir, env


CHECKOV_VENV = tf.REPO / ".venv-checkov"
CHECKOV_REQUIREMENTS = tf.REPO / "requirements-checkov.txt"
CHECKOV_INSTALL_TIMEOUT = 900


class CheckovInstall:
    """Builds .venv-checkov from requirements-checkov.txt in a background thread.

    checkov needs its own virtualenv (its hcl2 fork replaces python-hcl2's module), and the
    install takes over a minute; started before the moto apply, it costs no wall time.
    A stamp holding the requirements text makes a later run reuse the venv until the pin moves.
    """

    def __init__(self) -> None:
        self.stamp = CHECKOV_VENV / ".installed"
        self.binary = CHECKOV_VENV / "bin" / "checkov"
        self.error = ""
        self._wanted = CHECKOV_REQUIREMENTS.read_text()
        self._thread: threading.Thread | None = None
        if not (
            self.binary.exists() and self.stamp.exists() and self.stamp.read_text() == self._wanted
        ):
            self._thread = threading.Thread(
                target=self._install, name="checkov-install", daemon=True
            )
            self._thread.start()

    def _install(self) -> None:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(CHECKOV_VENV)],
            [
                str(CHECKOV_VENV / "bin" / "pip"),
                "install",
                "--quiet",
                # Byte-compiling checkov's ~100 dependencies costs more CPU, while the moto apply
                # runs beside it, than the one checkov run here saves.
                "--no-compile",
                "-r",
                str(CHECKOV_REQUIREMENTS),
            ],
        ]
        try:
            for step in steps:
                proc = subprocess.run(
                    step,
                    capture_output=True,
                    text=True,
                    timeout=CHECKOV_INSTALL_TIMEOUT,
                    check=False,
                )
                if proc.returncode != 0:
                    self.error = (
                        f"{' '.join(step)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
                    )
                    return
            self.stamp.write_text(self._wanted)
        except subprocess.TimeoutExpired as exc:
            self.error = f"checkov install timed out: {exc}"

    def wait(self) -> Path:
        if self._thread is not None:
            self._thread.join(timeout=CHECKOV_INSTALL_TIMEOUT + 60)
            if self._thread.is_alive():
                pytest.fail("the checkov install did not finish in time")
        if self.error:
            pytest.fail(self.error)
        assert self.binary.exists(), f"{self.binary} missing after install"
        return self.binary


@pytest.fixture(scope="session")
def checkov_install() -> CheckovInstall:
    return CheckovInstall()
