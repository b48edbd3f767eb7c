"""``gladd check``'s full run: load the policies, import and validate every plugin they
configure, and print the verdict. :mod:`gladd.cli.check` runs it when its cache has no
verdict for the same inputs; what it read beyond the cache key goes into a
:class:`~gladd.cli.check_cache.Reads` so a later run can tell whether it still holds."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from gladd import tracing
from gladd.cli.check_cache import Reads
from gladd.cli.exits import EXIT_CONFIG, EXIT_OK, fail
from gladd.cli.flags import settings_from
from gladd.durations import format_duration
from gladd.errors import PolicyError, Problem, SettingsError
from gladd.executor.flow import describe_gate, gates_of, policy_pauses
from gladd.executor.registry_checks import registry_problems
from gladd.maintenance.ticks import ticks_after
from gladd.plugins import PluginReport, plugin_report, shipped_plugin_dir
from gladd.plugins.known_kinds import known_kinds
from gladd.policies import LoadedPolicies, SchedulePolicy, load_policies, placed
from gladd.settings import Settings

SHOWN_TICKS = 3
"""How many fire times ``gladd check`` shows per schedule."""


def full_check(args: argparse.Namespace, reads: Reads) -> int:
    """What ``ExecStartPre=gladd check`` runs: non-zero unless the daemon would start with
    every rule and every configured plugin it is given. Prints the verdict; notes in
    ``reads`` what it read, for the cache (:mod:`gladd.cli.check_cache`)."""
    found = _settings_and_policies(args, reads)
    if isinstance(found, int):
        return found
    settings, path, loaded = found
    _note_plugin_inputs(reads, loaded, settings)
    report = plugin_report(loaded.policies, settings.plugin_paths, environ=reads.environ)
    against_kinds = placed(
        registry_problems(loaded.policies, known_kinds(loaded.policies, settings.plugin_paths)),
        loaded,
    )
    schedules = [p for p in against_kinds if p.path.startswith("schedules.")]
    flow = [p for p in against_kinds if p not in schedules]
    plugins_fail = bool(report.errors) and not args.allow_broken_plugins
    code = EXIT_CONFIG if plugins_fail or against_kinds else EXIT_OK
    now = datetime.now(UTC)
    _note_expiry(reads, loaded, now)
    if args.json:
        _print_json(check_json(path, loaded, report, code, schedules=schedules, flow=flow, now=now))
        return code
    print(_headline(path, report, schedules, flow, code))
    print(summarise(loaded))
    print(f"  plugins:        {', '.join(report.plugins) or 'none'}")
    if settings.otel:
        print(f"  traces:         {tracing.describe_exporter()}")
    for name, schedule in loaded.policies.schedules.items():
        print(f"  {describe_schedule(name, schedule, now)}")
    for gate in gates_of(loaded.policies):
        print(f"  {describe_gate(gate)}")
    for target in policy_pauses(loaded.policies):
        print(f"  paused: {target} (paused = true)")
    for note in report.notes:
        print(f"  note: {note}")
    for line in (*report.warnings, *map(str, report.errors)):
        print(f"gladd: {line}", file=sys.stderr)
    fail("\n".join(p.render(loaded.source) for p in against_kinds))
    return code


def _settings_and_policies(
    args: argparse.Namespace, reads: Reads
) -> tuple[Settings, Path, LoadedPolicies] | int:
    """The settings, the policies path and its policies; or, having said what is wrong
    with them, the exit code."""
    try:
        settings = _checked_settings(args)
    except SettingsError as exc:
        if args.json:
            _print_json(settings_json(args.path, exc))
        else:
            fail(str(exc))
        return EXIT_CONFIG
    path: Path = args.path or settings.policies_path
    reads.contents.append(os.path.abspath(path))
    if args.path is None and settings.policies is None:
        reads.contents.append(os.path.abspath("policies.toml"))  # a candidate, present or not
    try:
        return settings, path, load_policies(path)
    except PolicyError as exc:
        if args.json:
            _print_json(check_json(path, exc, None, EXIT_CONFIG))
            return EXIT_CONFIG
        fail(str(exc))
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return EXIT_CONFIG


def _note_plugin_inputs(reads: Reads, loaded: LoadedPolicies, settings: Settings) -> None:
    """The plugin directories discovery lists, and the secret files a plugin's settings
    name (``token_file = "..."``; any ``*_file`` string, whether a field takes it or not)."""
    reads.plugin_dirs += [str(shipped_plugin_dir()), *map(os.path.abspath, settings.plugin_paths)]
    for table in loaded.policies.plugins.values():
        reads.stat_files += [
            os.path.abspath(value)
            for key, value in table.items()
            if key.endswith("_file") and isinstance(value, str) and value
        ]


def _note_expiry(reads: Reads, loaded: LoadedPolicies, now: datetime) -> None:
    """The first fire time shown: from then on, the verdict would show other times."""
    for s in loaded.policies.schedules.values():
        if not s.paused and (ticks := ticks_after(s, now, 1)):
            reads.expire_at(ticks[0].timestamp())


def _headline(
    path: Path,
    report: PluginReport,
    schedules: Sequence[Problem],
    flow: Sequence[Problem],
    code: int,
) -> str:
    groups = (("plugins", report.errors), ("schedules", schedules), ("flow control", flow))
    wrong = [name for name, bad in groups if bad]
    if not wrong:
        return f"{path}: OK"
    allowed = " (allowed by --allow-broken-plugins)" if code == EXIT_OK else ""
    return f"{path}: policies OK, {' and '.join(wrong)} not{allowed}"


def describe_schedule(name: str, s: SchedulePolicy, now: datetime) -> str:
    """``schedule NAME: cron "0 3 * * *" Europe/Berlin → KIND; next ...``: its next
    :data:`SHOWN_TICKS` fire times after ``now``, local and UTC (or ``; paused``)."""
    timing = f'cron "{s.cron}"' if s.cron is not None else f"every {_dur(s.every or 0.0)}"
    head = f"schedule {name}: {timing} {s.timezone} → {s.kind}"
    if s.paused:
        return f"{head}; paused"
    shown = ", ".join(_tick_text(t, s) for t in ticks_after(s, now, SHOWN_TICKS))
    return f"{head}; next {shown}"


def _tick_text(tick: datetime, s: SchedulePolicy) -> str:
    local = tick.astimezone(s.zone)
    clock = "%H:%M" if local.second == 0 else "%H:%M:%S"
    text = f"{local:%Y-%m-%d} {local.strftime(clock)} {local.tzname()}"
    if s.timezone in {"UTC", "Etc/UTC"}:
        return text
    utc = tick.strftime(clock if local.date() == tick.date() else f"%Y-%m-%d {clock}")
    return f"{text} ({utc} UTC)"


def check_json(
    path: Path,
    policies: LoadedPolicies | PolicyError,
    plugins: PluginReport | None,
    code: int,
    *,
    schedules: Sequence[Problem] = (),
    flow: Sequence[Problem] = (),
    now: datetime | None = None,
) -> dict[str, object]:
    """``gladd check --json``: the verdict, each problem located; ``exit_code`` is the
    command's. ``plugins``, ``schedules`` and ``flow`` (partitions checked against the
    kinds' payloads) are null when the policies are invalid (nothing to load them by);
    each schedule lists its next fire times after ``now``, in UTC."""
    if isinstance(policies, PolicyError):
        verdict: dict[str, object] = {
            "ok": False,
            "errors": [_problem_json(policies.file, p) for p in policies.problems],
        }
        listed: dict[str, object] | None = None
        gated: dict[str, object] | None = None
    else:
        verdict = {"ok": True, "errors": [], "sha256": policies.sha256}
        listed = _schedules_json(policies, schedules, now or datetime.now(UTC))
        gated = {"ok": not flow, "errors": [_problem_json(policies.source, p) for p in flow]}
    return {
        "path": str(path),
        "ok": code == EXIT_OK,
        "exit_code": code,
        "settings": {"ok": True, "error": None},
        "policies": verdict,
        "plugins": plugins.as_json() if plugins is not None else None,
        "schedules": listed,
        "flow": gated,
    }


def _problem_json(file: str, p: Problem) -> dict[str, object]:
    return {
        "file": file,
        "line": p.line,
        "column": p.column,
        "key": p.path,
        "message": p.message,
        "text": p.render(file),
    }


def _schedules_json(
    loaded: LoadedPolicies, problems: Sequence[Problem], now: datetime
) -> dict[str, object]:
    return {
        "ok": not problems,
        "errors": [_problem_json(loaded.source, p) for p in problems],
        "schedules": [
            {
                "name": name,
                "cron": s.cron,
                "every": _dur(s.every) if s.every is not None else None,
                "timezone": s.timezone,
                "kind": s.kind,
                "paused": s.paused,
                "next": []
                if s.paused
                else [t.isoformat() for t in ticks_after(s, now, SHOWN_TICKS)],
            }
            for name, s in loaded.policies.schedules.items()
        ],
    }


def _checked_settings(args: argparse.Namespace) -> Settings:
    """The settings, and what ``gladd run`` would refuse about them before the policies."""
    settings = settings_from(args)
    if settings.otel and (problem := tracing.setup_problem()) is not None:
        raise SettingsError(problem)
    return settings


def settings_json(path: Path | None, error: SettingsError) -> dict[str, object]:
    """``gladd check --json`` when the settings themselves are wrong: nothing else could
    be checked (the policies path or the plugins may depend on them)."""
    return {
        "path": str(path) if path is not None else None,
        "ok": False,
        "exit_code": EXIT_CONFIG,
        "settings": {"ok": False, "error": str(error)},
        "policies": None,
        "plugins": None,
        "schedules": None,
        "flow": None,
    }


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def summarise(loaded: LoadedPolicies) -> str:
    """A few lines saying what a valid policies file defines."""
    p = loaded.policies

    def names(d: dict[str, object]) -> str:
        return ", ".join(sorted(d)) if d else "none"

    e = p.executor
    return "\n".join(
        [
            f"  retry policies: {names(dict(p.retry))}",
            f"  breakers:       {names(dict(p.breaker))}",
            f"  services:       {names(dict(p.services))}",
            f"  task kinds:     {names(dict(p.tasks))}",
            f"  executor:       concurrency {e.concurrency}, task timeout "
            f"{_dur(e.task_timeout)}, shutdown grace {_dur(e.shutdown_grace)}",
            f"  database:       query timeout {_dur(p.database.query_timeout)}",
            f"  sha256:         {loaded.sha256}",
        ]
    )


def _dur(seconds: float) -> str:
    return format_duration(seconds)
