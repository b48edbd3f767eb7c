"""``promtool check metrics`` on a scrape body (Debian package ``prometheus``)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def promtool_check(body: bytes) -> None:
    """Fails on any problem promtool reports; skips without promtool, except in CI."""
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    report = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, report
    assert "error" not in report.lower(), report
