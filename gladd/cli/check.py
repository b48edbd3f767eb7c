"""``gladd check``: validate a policies file and the plugins it configures; summarise them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gladd import tracing
from gladd.cli.exits import EXIT_CONFIG, EXIT_OK, fail
from gladd.cli.flags import settings_from
from gladd.durations import format_duration
from gladd.errors import PolicyError, SettingsError
from gladd.plugins import PluginReport, plugin_report
from gladd.policies import LoadedPolicies, load_policies
from gladd.settings import Settings


def add_check_command(commands: Any) -> None:
    """Register ``check`` with the main parser's subcommands."""
    check = commands.add_parser(
        "check",
        help="validate a policies file and the plugins it configures; summarise them",
        description="Exit code: 0 valid, 78 invalid policies or a broken or misconfigured "
        "plugin (0 for plugins with --allow-broken-plugins).",
    )
    check.add_argument("path", nargs="?", type=Path, help="default: the configured policies")
    check.add_argument("--env-file", type=Path, help="read GLADD_* settings from this file")
    check.add_argument(
        "--allow-broken-plugins",
        action="store_true",
        help="exit 0 when only plugins are wrong (the daemon runs without them); still listed",
    )
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.set_defaults(command="check", handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """What ``ExecStartPre=gladd check`` runs: non-zero unless the daemon would start with
    every rule and every configured plugin it is given."""
    try:
        settings = _checked_settings(args)
    except SettingsError as exc:
        if not args.json:
            raise
        _print_json(settings_json(args.path, exc))
        return EXIT_CONFIG
    path: Path = args.path or settings.policies_path
    try:
        loaded = load_policies(path)
    except PolicyError as exc:
        if args.json:
            _print_json(check_json(path, exc, None, EXIT_CONFIG))
            return EXIT_CONFIG
        fail(str(exc))
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return EXIT_CONFIG
    report = plugin_report(loaded.policies, settings.plugin_paths)
    code = EXIT_CONFIG if report.errors and not args.allow_broken_plugins else EXIT_OK
    if args.json:
        _print_json(check_json(path, loaded, report, code))
        return code
    if not report.errors:
        print(f"{path}: OK")
    else:
        allowed = " (allowed by --allow-broken-plugins)" if code == EXIT_OK else ""
        print(f"{path}: policies OK, plugins not{allowed}")
    print(summarise(loaded))
    print(f"  plugins:        {', '.join(report.plugins) or 'none'}")
    if settings.otel:
        print(f"  traces:         {tracing.describe_exporter()}")
    for note in report.notes:
        print(f"  note: {note}")
    for line in (*report.warnings, *map(str, report.errors)):
        print(f"gladd: {line}", file=sys.stderr)
    return code


def check_json(
    path: Path,
    policies: LoadedPolicies | PolicyError,
    plugins: PluginReport | None,
    code: int,
) -> dict[str, object]:
    """``gladd check --json``: the verdict, each problem located; ``exit_code`` is the
    command's. ``plugins`` is null when the policies are invalid (nothing to load them by)."""
    if isinstance(policies, PolicyError):
        verdict: dict[str, object] = {
            "ok": False,
            "errors": [
                {
                    "file": policies.file,
                    "line": p.line,
                    "column": p.column,
                    "key": p.path,
                    "message": p.message,
                    "text": p.render(policies.file),
                }
                for p in policies.problems
            ],
        }
    else:
        verdict = {"ok": True, "errors": [], "sha256": policies.sha256}
    return {
        "path": str(path),
        "ok": code == EXIT_OK,
        "exit_code": code,
        "settings": {"ok": True, "error": None},
        "policies": verdict,
        "plugins": plugins.as_json() if plugins is not None else None,
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
