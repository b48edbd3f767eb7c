"""``gladd reload``: ask the running daemon to reload policies.toml; print the verdict."""

from __future__ import annotations

import argparse
import sys

from gladd.cli.admin_client import admin_request
from gladd.cli.exits import EXIT_CONFIG, EXIT_OK
from gladd.cli.flags import settings_from
from gladd.errors import StartupError


def run_reload(args: argparse.Namespace) -> int:
    """Ask the daemon to reload and wait for the verdict (what systemd's ExecReload runs)."""
    response = admin_request(settings_from(args), "POST", "/reload")
    if response.status_code not in (200, 422):
        raise StartupError(f"reload failed: HTTP {response.status_code}: {response.text[:200]}")
    verdict = response.json()
    print(verdict["summary"])
    for change in verdict["changes"]:
        print(f"  {change}")
    for error in verdict["errors"]:
        print(error, file=sys.stderr)
    return EXIT_CONFIG if verdict["outcome"] == "rejected" else EXIT_OK
