"""``gladd run``: the daemon in the foreground, until a stop signal."""

from __future__ import annotations

import argparse
import importlib.util

import anyio
from loguru import logger

from gladd.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_TEMPFAIL
from gladd.cli.flags import settings_from
from gladd.cli.traces import traced
from gladd.daemon import Daemon
from gladd.errors import PolicyError, StartupError, StopIncomplete
from gladd.logs import configure_logging
from gladd.notify import Notifier
from gladd.policies import LoadedPolicies, load_policies
from gladd.runtime import LAST_GOOD
from gladd.settings import Settings

EVENT_LOOP = {"use_uvloop": importlib.util.find_spec("uvloop") is not None}
"""uvloop where it is installed (a dependency off Windows): cheaper sockets and callbacks
under the admin API's requests and the store's round trips (bench/bench_producer.py)."""


def run_daemon(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        file=settings.log_file,
        rotation=settings.log_rotation,
        retention=settings.log_retention,
    )
    loaded, broken = _startup_policies(settings, use_last_good=args.use_last_good)
    logger.info("policies loaded from {} (sha256 {})", loaded.source, loaded.sha256[:12])
    with traced(settings), Notifier.from_environ() as notifier:
        daemon = Daemon(settings, loaded, notifier, broken_on_disk=broken)
        try:
            anyio.run(daemon.run, backend_options=EVENT_LOOP)
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
