"""The ``gladd`` command: ``run``, ``check``, ``reload``, ``--version``.

Operator mistakes (bad policies, bad settings, a port in use) print one precise message
per problem on stderr and exit non-zero, never a traceback. Exit codes follow sysexits(3)
where one fits, so scripts and systemd can tell a config error from a crash.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
from loguru import logger

from gladd.admin.client import admin_request
from gladd.cli.status import add_status_command, run_status
from gladd.cli.tasks import add_commands, run_verb
from gladd.daemon import LAST_GOOD, Daemon
from gladd.durations import format_duration
from gladd.errors import (
    ConfigError,
    GladdError,
    PolicyError,
    StartupError,
    StopIncomplete,
    TaskRejected,
    TaskStateConflict,
    UnknownTask,
)
from gladd.launch import EXIT_INTERRUPTED
from gladd.logs import configure_logging
from gladd.notify import Notifier
from gladd.plugins import PluginReport, plugin_report
from gladd.policies import LoadedPolicies, load_policies
from gladd.settings import Settings, load_settings
from gladd.version import __version__

EXIT_OK = 0
EXIT_CONFLICT = 1  # the task's state forbids it: cancel a finished task, retry a live one
EXIT_USAGE = 64  # EX_USAGE
EXIT_CONFIG = 78  # EX_CONFIG: policies or settings are wrong
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: could not start, or no daemon / database to talk to
EXIT_DATAERR = 65  # EX_DATAERR: a task refused (unknown kind, invalid payload)
EXIT_NOINPUT = 66  # EX_NOINPUT: no such task
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: stopped, but some running tasks wait for a lease rescue


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        _fail(str(exc))
        return EXIT_CONFIG
    except TaskRejected as exc:
        _fail(str(exc))
        return EXIT_DATAERR
    except UnknownTask as exc:
        _fail(str(exc))
        return EXIT_NOINPUT
    except TaskStateConflict as exc:
        _fail(str(exc))
        return EXIT_CONFLICT
    except GladdError as exc:
        _fail(str(exc))
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    return code


def _fail(message: str) -> None:
    for line in message.splitlines():
        print(f"gladd: {line}" if not _located(line) else line, file=sys.stderr)


def _located(line: str) -> bool:
    # "policies.toml:4:15: ..." and "/etc/gladd/policies.toml: ..." lines already say where.
    head = line.split(":", 1)[0]
    return " " not in head and (head.endswith(".toml") or "/" in head)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gladd",
        description="A resilience daemon driven by policies.toml.",
    )
    parser.add_argument("--version", action="version", version=f"gladd {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon in the foreground")
    _settings_flags(run)
    run.set_defaults(command="run", handler=_run)

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
    check.set_defaults(command="check", handler=_check)

    reload = commands.add_parser(
        "reload", help="ask the running daemon to reload policies.toml; prints the verdict"
    )
    reload.add_argument("--admin-host", metavar="HOST", help="the daemon's admin address")
    reload.add_argument("--admin-port", type=int, metavar="PORT", help="the daemon's admin port")
    reload.add_argument("--env-file", type=Path, metavar="PATH", help="read GLADD_* settings")
    reload.set_defaults(command="reload", handler=_reload)

    add_commands(commands, _settings_flags, handler=lambda args: run_verb(args, _settings(args)))
    add_status_command(
        commands, _settings_flags, handler=lambda args: run_status(args, _settings(args))
    )
    return parser


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--policies", type=Path, metavar="PATH", help="policies file (GLADD_POLICIES)")
    add("--database-url", metavar="URL", help="task store (GLADD_DATABASE_URL)")
    add("--state-dir", type=Path, metavar="DIR", help="state directory (GLADD_STATE_DIR)")
    add("--admin-host", metavar="HOST", help="admin API address (GLADD_ADMIN_HOST)")
    add("--admin-port", type=int, metavar="PORT", help="admin API port (GLADD_ADMIN_PORT)")
    add("--log-level", metavar="LEVEL", help="TRACE..CRITICAL (GLADD_LOG_LEVEL)")
    add("--log-format", choices=["text", "json"], help="log line format (GLADD_LOG_FORMAT)")
    add("--log-file", type=Path, metavar="PATH", help="also log to this file (GLADD_LOG_FILE)")
    add("--env-file", type=Path, metavar="PATH", help="read GLADD_* settings from this file")
    add(
        "--use-last-good",
        action="store_true",
        help="if the policies file is invalid, start from the last accepted copy",
    )


def _settings(args: argparse.Namespace) -> Settings:
    names = (
        "policies",
        "database_url",
        "state_dir",
        "admin_host",
        "admin_port",
        "log_level",
        "log_format",
        "log_file",
    )
    flags = {name: getattr(args, name, None) for name in names}
    return load_settings(env_file=args.env_file, **flags)


def _check(args: argparse.Namespace) -> int:
    """What ``ExecStartPre=gladd check`` runs: non-zero unless the daemon would start with
    every rule and every configured plugin it is given."""
    settings = _settings(args)
    path: Path = args.path or settings.policies_path
    try:
        loaded = load_policies(path)
    except PolicyError as exc:
        if args.json:
            _print_json(check_json(path, exc, None, EXIT_CONFIG))
            return EXIT_CONFIG
        _fail(str(exc))
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
        "policies": verdict,
        "plugins": plugins.as_json() if plugins is not None else None,
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


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        file=settings.log_file,
        rotation=settings.log_rotation,
        retention=settings.log_retention,
    )
    loaded, broken = _startup_policies(settings, use_last_good=args.use_last_good)
    logger.info("policies loaded from {} (sha256 {})", loaded.source, loaded.sha256[:12])
    with Notifier.from_environ() as notifier:
        daemon = Daemon(settings, loaded, notifier, broken_on_disk=broken)
        try:
            anyio.run(daemon.run)
        except StartupError:
            notifier.status("failed to start")
            raise
        except StopIncomplete:  # the daemon logged which tasks, and what happens to them
            return EXIT_TEMPFAIL
    return EXIT_INTERRUPTED if daemon.interrupted_at_start else EXIT_OK


def _startup_policies(
    settings: Settings, *, use_last_good: bool
) -> tuple[LoadedPolicies, PolicyError | None]:
    """The policies to start with; with ``--use-last-good``, a broken file falls back to
    the copy the last run accepted (and the daemon warns in /health until it is fixed)."""
    try:
        return load_policies(settings.policies_path), None
    except PolicyError as broken:
        last_good = settings.state_dir / LAST_GOOD
        if not use_last_good or not last_good.is_file():
            raise
        for line in str(broken).splitlines():
            logger.error("{}", line)
        logger.warning("starting from the last good copy {} (--use-last-good)", last_good)
        return load_policies(last_good), broken


def _reload(args: argparse.Namespace) -> int:
    """Ask the daemon to reload and wait for the verdict (what systemd's ExecReload runs)."""
    response = admin_request(_settings(args), "POST", "/reload")
    if response.status_code not in (200, 422):
        raise StartupError(f"reload failed: HTTP {response.status_code}: {response.text[:200]}")
    verdict = response.json()
    print(verdict["summary"])
    for change in verdict["changes"]:
        print(f"  {change}")
    for error in verdict["errors"]:
        print(error, file=sys.stderr)
    return EXIT_CONFIG if verdict["outcome"] == "rejected" else EXIT_OK
