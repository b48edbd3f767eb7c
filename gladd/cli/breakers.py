"""``gladd breakers``: list the running daemon's breakers; isolate or reset one.

Through the admin API (``GET /breakers``, ``POST /breakers/NAME/isolate|reset``) with the
standard library's HTTP client, so it starts light. Exit codes: 0 done, 66 no such breaker
(the known ones are named), 69 no daemon answers (or it answers with something else).
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote

from gladd.cli.admin_http import Unreachable, admin_url, ask_json, shown_time
from gladd.cli.exits import EXIT_NOINPUT, EXIT_OK, EXIT_UNAVAILABLE, fail
from gladd.cli.flags import light_settings_from


def run(args: argparse.Namespace) -> int:
    """The ``breakers`` command and its ``isolate`` / ``reset`` verbs."""
    settings = light_settings_from(args)
    base = (args.url or admin_url(settings.admin_host, settings.admin_port)).rstrip("/")
    token = settings.admin_token
    secret = token if isinstance(token, str | None) else token.get_secret_value()
    verb = getattr(args, "breaker_verb", None)
    try:
        if verb is None:
            status, body = ask_json(base, "GET", "/breakers", secret)
        else:
            path = f"/breakers/{quote(args.name, safe='')}/{verb}"
            status, body = ask_json(base, "POST", path, secret)
    except Unreachable as exc:
        fail(str(exc))
        return EXIT_UNAVAILABLE
    if status == 404 and isinstance(body, dict) and "known" in body:
        fail(str(body.get("error")))
        return EXIT_NOINPUT
    if status != 200 or not isinstance(body, dict):
        message = body.get("error") if isinstance(body, dict) else body
        fail(f"{base} answered HTTP {status}: {message}")
        return EXIT_UNAVAILABLE
    if args.json:
        print(json.dumps(body, indent=2))
    elif verb is None:
        print(table(body.get("breakers", [])))
    else:
        print(f"breaker {body['name']}: {body['was']} -> {body['state']}")
    return EXIT_OK


def table(breakers: list[dict[str, Any]]) -> str:
    """One row per breaker: name, state, since, last failure, next probe."""
    if not breakers:
        return "no breakers (no service or task declares one)"
    rows = [("NAME", "STATE", "SINCE", "NEXT PROBE", "LAST FAILURE")]
    for b in breakers:
        failures = b.get("recent_failures") or []
        last = failures[-1]["error"] if failures else "-"
        rows.append(
            (
                str(b.get("name")),
                str(b.get("state")),
                shown_time(b.get("since")),
                shown_time(b.get("next_probe")),
                last,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    ).rstrip()
