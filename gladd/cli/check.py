"""``gladd check``: validate a policies file and the plugins it configures; summarise them.

A check whose inputs have not changed since the last one prints that one's verdict again,
byte for byte and with its exit code, from a cache (:mod:`gladd.cli.check_cache`), in a
small fraction of the time a full check (:mod:`gladd.cli.check_verdict`) takes to import
the policies model and every plugin. This module imports only the cache; the full check
is imported on a miss.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from gladd.cli import check_cache

if TYPE_CHECKING:
    import argparse


def run_check(args: argparse.Namespace) -> int:
    """``gladd check``: the cached verdict when it still holds, else a full check (whose
    verdict is then kept); the exit code. What the command tree's handler calls."""
    key = None if getattr(args, "no_cache", False) else check_cache.verdict_key(args)
    if key is not None and (code := check_cache.replay(key)) is not None:
        return code
    from gladd.cli.check_verdict import full_check  # noqa: PLC0415 - the miss path only

    reads = check_cache.Reads(os.environ)
    started = time.time_ns()
    with check_cache.Recording() as recording:
        code = full_check(args, reads)
    if key is not None and check_cache.verdict_key(args) == key:
        check_cache.store(key, recording, code, reads, started_ns=started)
    return code
