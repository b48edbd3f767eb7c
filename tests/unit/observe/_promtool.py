"""promtool (Debian package ``prometheus``): ``promtool check metrics`` on a scrape body, and
the lookup the contrib rules' tests share."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def promtool_path() -> str:
    """promtool's path; fails without it in CI, skips elsewhere."""
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return promtool


def promtool_check(body: bytes) -> None:
    """Fails on any problem promtool reports."""
    done = subprocess.run(
        [promtool_path(), "check", "metrics"],
        input=body,
        capture_output=True,
        timeout=30,
        check=False,
    )
    report = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, report
    assert "error" not in report.lower(), report
