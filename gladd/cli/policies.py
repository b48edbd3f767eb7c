"""``gladd policies history``: the running daemon's policies generations and last rejection.

Through the admin API (``GET /policies/history``) with the standard library's HTTP client,
so it starts light. Newest first: each generation's number, time, trigger, sha256, the
changes and the diff against the generation before; then the last rejection with its
errors and whether it still stands. Exit codes: 0 done, 64 a bad ``--limit``, 69 no daemon
answers (or it answers with something else).
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from gladd.cli.admin_http import Unreachable, admin_url, ask_json, shown_time
from gladd.cli.exits import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail
from gladd.cli.flags import light_settings_from


def run_history(args: argparse.Namespace) -> int:
    """The ``policies history`` command."""
    settings = light_settings_from(args)
    base = (args.url or admin_url(settings.admin_host, settings.admin_port)).rstrip("/")
    token = settings.admin_token
    secret = token if isinstance(token, str | None) else token.get_secret_value()
    path = (
        "/policies/history"
        if args.limit is None
        else f"/policies/history?limit={quote(args.limit, safe='')}"
    )
    try:
        status, body = ask_json(base, "GET", path, secret)
    except Unreachable as exc:
        fail(str(exc))
        return EXIT_UNAVAILABLE
    if status == 400 and isinstance(body, dict):
        fail(f"--limit: {body.get('error')}")
        return EXIT_USAGE
    if status != 200 or not isinstance(body, dict) or "generations" not in body:
        message = body.get("error") if isinstance(body, dict) else body
        fail(f"{base} answered HTTP {status}: {message}")
        return EXIT_UNAVAILABLE
    print(json.dumps(body, indent=2) if args.json else render(body))
    return EXIT_OK


def _when(moment: str | None) -> str:
    return shown_time(moment, suffix=" UTC")


def render(body: dict[str, Any]) -> str:
    """The history as an operator reads it: one block per generation, newest first."""
    lines: list[str] = []
    for entry in body.get("generations", []):
        lines.append(
            f"generation {entry['generation']}  {_when(entry.get('at'))}  "
            f"{entry.get('trigger')}  sha256 {str(entry.get('sha256'))[:12]}"
        )
        lines += [f"  {change}" for change in entry.get("changes", [])]
        if entry.get("diff"):
            lines += [f"    {line}" for line in str(entry["diff"]).splitlines()]
        elif entry.get("diff_note") and entry["generation"] != 1:
            lines.append(f"  ({entry['diff_note']})")
        if not entry.get("text_kept", True):
            lines.append(f"  ({entry.get('text_note')})")
        lines.append("")
    lines += _rejection(body.get("last_rejection"))
    return "\n".join(lines).rstrip()


def _rejection(rejection: dict[str, Any] | None) -> list[str]:
    if not rejection:
        return ["last rejection: none since the daemon started"]
    if rejection.get("standing"):
        state = f"STANDING: generation {rejection.get('generation_served')} is still served"
    else:
        state = f"resolved {_when(rejection.get('resolved_at'))} ({rejection.get('resolved_by')})"
    sha = str(rejection.get("sha256") or "-")[:12]
    lines = [
        f"last rejection: {_when(rejection.get('at'))}  {rejection.get('trigger')}  "
        f"sha256 {sha}  {state}"
    ]
    return lines + [f"  {error}" for error in rejection.get("errors", [])]
