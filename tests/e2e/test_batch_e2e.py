"""``gladd tasks enqueue --from-file``: a JSON Lines batch, all stored or none, through the
real ``gladd`` command on a SQLite state directory — from a file and from stdin."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import GLADD

pytestmark = pytest.mark.e2e


def gladd(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GLADD_")}
    return subprocess.run(
        [GLADD, *args, "--state-dir", str(state)],
        check=False,
        env={**clean, "GLADD_ENV_FILE": ""},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    made = gladd(tmp_path / "state", "db", "migrate")
    assert made.returncode == 0, made.stderr
    return tmp_path / "state"


def listed(state: Path) -> list[dict[str, Any]]:
    shown = gladd(state, "tasks", "list", "--json")
    assert shown.returncode == 0, shown.stderr
    tasks: list[dict[str, Any]] = json.loads(shown.stdout)
    return sorted(tasks, key=lambda t: t["id"])


def test_a_file_of_tasks_is_stored_and_its_ids_printed_in_line_order(
    state: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "tasks.jsonl"
    batch.write_text(
        '{"kind": "gladd.noop", "unique_key": "k"}\n'
        "\n"
        '{"kind": "gladd.sleep", "payload": {"seconds": 1}, "delay": "1h", "priority": 9}\n'
        '{"kind": "gladd.noop", "unique_key": "k"}\n'
    )
    done = gladd(state, "tasks", "enqueue", "--from-file", str(batch))
    assert done.returncode == 0, done.stderr
    ids = [int(line) for line in done.stdout.splitlines()]
    assert len(ids) == 3
    assert ids[2] == ids[0]
    assert done.stderr == f"{batch}:4: task {ids[0]} with unique key 'k' already exists\n"
    tasks = listed(state)
    assert [(t["id"], t["kind"]) for t in tasks] == [
        (ids[0], "gladd.noop"),
        (ids[1], "gladd.sleep"),
    ]
    assert (tasks[1]["payload"], tasks[1]["priority"]) == ({"seconds": 1}, 9)

    piped = gladd(state, "tasks", "enqueue", "--from-file", "-", stdin='{"kind": "gladd.noop"}\n')
    assert piped.returncode == 0, piped.stderr
    assert int(piped.stdout) > ids[1]
    # The single form is as it was.
    single = gladd(state, "tasks", "enqueue", "gladd.noop", "--payload", '{"n": 1}')
    assert single.returncode == 0, single.stderr
    assert len(listed(state)) == 4


def test_a_refused_batch_names_each_line_and_stores_nothing(state: Path) -> None:
    lines = [
        '{"kind": "gladd.noop"}',
        '{"kind": "nope"}',
        "",
        '{"kind": "gladd.sleep", "payload": {"seconds": -1}}',
        '{"kind": "gladd.noop", "colour": "red"}',
        "[1, 2]",
    ]
    done = gladd(state, "tasks", "enqueue", "--from-file", "-", stdin="\n".join(lines) + "\n")
    assert done.returncode == 65
    assert done.stdout == ""
    errors = done.stderr.splitlines()
    assert errors[0].startswith(
        "<stdin>:2: kind: unknown task kind 'nope': no gladd daemon has published its kinds"
    )
    assert errors[0].endswith("(known kinds: gladd.noop, gladd.sleep)")
    assert errors[1].startswith("<stdin>:4: payload: payload for gladd.sleep is invalid: seconds")
    assert errors[2] == "<stdin>:5: colour: Extra inputs are not permitted"
    assert errors[3] == "<stdin>:6: must be an object"
    assert errors[4] == "gladd: nothing stored from <stdin>"
    assert listed(state) == []


def test_a_line_that_is_not_json_is_named_and_nothing_is_stored(
    state: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "broken.jsonl"
    batch.write_text('{"kind": "gladd.noop"}\n{"kind": \n')
    done = gladd(state, "tasks", "enqueue", "--from-file", str(batch))
    assert done.returncode == 65
    assert done.stderr.startswith(f"{batch}:2: not JSON: Expecting value")
    assert listed(state) == []


def test_usage_errors_exit_64_and_a_missing_file_66(state: Path, tmp_path: Path) -> None:
    both = gladd(state, "tasks", "enqueue", "gladd.noop", "--from-file", "-")
    assert both.returncode == 64
    assert (
        both.stderr == "gladd: tasks enqueue: --from-file takes the tasks from its file, not KIND\n"
    )
    flags = gladd(state, "tasks", "enqueue", "--from-file", "-", "--delay", "1s")
    assert flags.returncode == 64
    neither = gladd(state, "tasks", "enqueue")
    assert neither.returncode == 64
    assert "give a KIND, or --from-file FILE" in neither.stderr
    missing = gladd(state, "tasks", "enqueue", "--from-file", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 66
    assert (
        missing.stderr
        == f"gladd: cannot read {tmp_path / 'none.jsonl'}: No such file or directory\n"
    )
    assert listed(state) == []
