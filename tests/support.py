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
