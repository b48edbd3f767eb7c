"""Stops that mean what they say, on the real process: Ctrl-C during start-up."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
from typing import IO

import pytest

from tests.e2e.conftest import Gladd

pytestmark = pytest.mark.e2e


def _lines(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """Every line of ``stream`` as it arrives, read by a thread (joined at EOF)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def test_ctrl_c_while_the_command_is_still_importing_exits_quietly_with_130(
    gladd: Gladd,
) -> None:
    # Python reports each import as it finishes (-X importtime): the interrupt lands while
    # the rest of gladd is still being imported, well before the daemon handles signals.
    process = subprocess.Popen(
        gladd.argv(),
        env=gladd.env(PYTHONPROFILEIMPORTTIME="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    gladd.process = process
    assert process.stderr is not None
    lines, pump = _lines(process.stderr)
    seen: list[str] = []
    while not any(re.search(r"\|\s+gladd\.errors$", line.rstrip()) for line in seen[-1:]):
        seen.append(lines.get(timeout=30))
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    pump.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(line for line in seen if not line.startswith("import time:"))
    assert "Traceback" not in output, output
    assert "KeyboardInterrupt" not in output, output
