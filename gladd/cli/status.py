"""``gladd status``: ask the running daemon how it is, in one screen or as JSON.

Reads ``GET /health`` (the checks the daemon keeps fresh in the background, so asking
costs it nothing) and prints a compact summary. The exit code is the health, for scripts:

    0  pass        1  warn        2  fail        69  no daemon answers (EX_UNAVAILABLE)
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gladd.cli.admin_http import BadURL, NotConnected, NotSent, admin_url, request
from gladd.cli.flags import light_settings_from
from gladd.cli.tree import add_status_command
from gladd.durations import format_duration
from gladd.light_settings import LightSettings

if TYPE_CHECKING:
    from gladd.settings import Settings

__all__ = ["add_status_command", "fetch_health", "run", "run_status", "summarise"]

EXIT_PASS = 0
EXIT_WARN = 1
EXIT_FAIL = 2
EXIT_UNAVAILABLE = 69
EXIT_BY_STATUS = {"pass": EXIT_PASS, "warn": EXIT_WARN, "fail": EXIT_FAIL}
TIMEOUT = 5.0


class Unreachable(Exception):
    """No gladd health report at the URL; the message says why."""


def run(args: argparse.Namespace) -> int:
    """The ``status`` command's handler."""
    return run_status(args, light_settings_from(args))


def run_status(args: argparse.Namespace, settings: LightSettings | Settings) -> int:
    """The ``status`` command; ``settings`` give the admin address and token."""
    base = (args.url or admin_url(settings.admin_host, settings.admin_port)).rstrip("/")
    token = settings.admin_token
    try:
        report = fetch_health(
            base, token=token if isinstance(token, str | None) else token.get_secret_value()
        )
    except Unreachable as exc:
        print(f"gladd: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(summarise(report, base))
    return EXIT_BY_STATUS.get(str(report.get("status")), EXIT_FAIL)


def fetch_health(base: str, *, token: str | None = None, timeout: float = TIMEOUT) -> Any:
    """The daemon's ``/health`` report (a 503 carries one too), or :class:`Unreachable`."""
    url = f"{base}/health"
    try:
        answer = request(base, "GET", "/health", token=token, timeout=timeout)
    except NotConnected as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _late(url, timeout) from None
        raise Unreachable(
            f"no gladd answers at {base} ({_reason(exc.reason)}); is the daemon running, and "
            "listening there? (--url, or --admin-host / --admin-port / GLADD_ADMIN_PORT)"
        ) from None
    except TimeoutError:
        raise _late(url, timeout) from None
    except BadURL as exc:
        raise Unreachable(f"{url}: UnsupportedProtocol: {exc}") from None
    except (http.client.HTTPException, OSError, NotSent) as exc:
        raise Unreachable(f"{url}: {type(exc).__name__}: {exc}") from None
    try:
        report = answer.json()
    except ValueError:
        report = None
    if not (isinstance(report, dict) and report.get("status") in EXIT_BY_STATUS):
        raise Unreachable(
            f"{url} answered HTTP {answer.status}, but not with a gladd health "
            "report: is something else listening on that port?"
        )
    return report


def _late(url: str, timeout: float) -> Unreachable:
    return Unreachable(
        f"{url} did not answer within {timeout:g}s: the daemon is hung or overloaded"
    )


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__


# -- the summary -------------------------------------------------------------------------------


def summarise(report: dict[str, Any], base: str = "") -> str:
    """A few lines an operator reads at a glance; problems last, one per line."""
    checks: dict[str, dict[str, Any]] = {
        key: (entries[0] if entries else {}) for key, entries in report.get("checks", {}).items()
    }

    def value(key: str, default: Any = "?") -> Any:
        return checks.get(key, {}).get("observedValue", default)

    def output(key: str) -> str:
        return str(checks.get(key, {}).get("output") or "")

    status = str(report.get("status", "?"))
    where = f" at {base}" if base else ""
    lines = [
        f"gladd {report.get('version', '?')} on {report.get('serviceId', '?')}{where}: "
        f"{status.upper()}",
        _row("policies", _policies(checks, value, output)),
        _row("database", _database(checks, value, output)),
        *_breakers(value, output),
        _row("executor", _executor(value, output)),
        _row("event loop", f"lag {value('eventloop:lag', 0)} ms (peak since the last check)"),
    ]
    problems = [
        f"  {c.get('status', '?').upper():<4}  {key}: {c.get('output') or c.get('observedValue')}"
        for key, c in sorted(checks.items())
        if c.get("status") in ("warn", "fail")
    ]
    lines.append(_row("alerts", "none" if not problems else f"{len(problems)}"))
    return "\n".join(lines + problems)


def _row(label: str, text: str) -> str:
    return f"  {label:<11}{text}"


Getter = Callable[..., Any]


def _policies(checks: dict[str, dict[str, Any]], value: Getter, output: Getter) -> str:
    text = f"generation {value('policies:generation')}"
    if checks.get("policies:generation", {}).get("status") == "pass":
        text += f" ({output('policies:generation')})"
    if value("policies:reload", None) == "rejected":
        return f"{text}, last reload rejected (the errors are listed below)"
    reload = output("policies:reload")
    return f"{text}, last reload {reload}" if reload else text


def _database(checks: dict[str, dict[str, Any]], value: Getter, output: Getter) -> str:
    ping = checks.get("database:responseTime", {})
    if ping.get("status") == "fail":
        answer = f"UNREACHABLE ({ping.get('output', '')})"
    else:
        answer = f"{value('database:responseTime')} ms"
    return f"{answer}; {output('database:connections')}"


def _breakers(value: Getter, output: Getter) -> list[str]:
    """Every breaker with its state, one a line; a daemon without ``breakers:state`` (older)
    gets the ones not closed, counted as that (half-open is not open)."""
    listed = value("breakers:state", None)
    if not isinstance(listed, list):
        tripped = value("breakers:open", 0)
        text = output("breakers:open")
        return [_row("breakers", text if not tripped else f"{tripped} not closed: {text}")]
    if not listed:
        return [_row("breakers", "none built yet (each is built on first use)")]
    states = [_state(b) for b in listed]
    counts = {state: states.count(state) for state in dict.fromkeys(sorted(states, key=_rank))}
    tally = ", ".join(f"{n} {state}" for state, n in counts.items())
    lines = [_row("breakers", f"{len(listed)}: {tally}")]
    width = max(len(_breaker_name(b)) for b in listed)
    for breaker, state in zip(listed, states, strict=True):
        probe = breaker.get("probeIn")
        when = f", probe in {format_duration(probe)}" if probe else ""
        lines.append(f"  {'':<11}{_breaker_name(breaker):<{width}}  {state}{when}")
    return lines


_STATE_ORDER = ("isolated", "open", "half-open", "closed")


def _state(breaker: dict[str, Any]) -> str:
    return str(breaker.get("state", "?")).replace("_", "-")


def _rank(state: str) -> int:
    return _STATE_ORDER.index(state) if state in _STATE_ORDER else len(_STATE_ORDER)


def _breaker_name(breaker: dict[str, Any]) -> str:
    return f"{breaker.get('breaker', '?')} for {breaker.get('service', '?')}"


def _executor(value: Getter, output: Getter) -> str:
    running = output("executor:running")
    if not running.startswith("not running"):
        running = f"{running or value('executor:running')} running"
    rate = value("executor:timeoutRate", 0) or 0
    return (
        f"{running}, {value('executor:queued')} queued, "
        f"{value('executor:deadLastHour', 0)} dead in the last hour, {rate:.1%} timeouts"
    )
