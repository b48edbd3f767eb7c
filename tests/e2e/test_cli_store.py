"""The store-facing commands find the daemon's store, or say they cannot — and never make
one. Also ``gladd tasks purge --dry-run / --state``. Real ``gladd`` processes throughout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LoggedGladd, executor_policies, run_cli, wait_until
from tests.e2e.test_tasks_e2e import DEAD_LETTER, Nodes

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def another_user(tmp_path: Path) -> dict[str, str]:
    """The environment of someone whose own state directory is elsewhere (root under sudo)."""
    home = tmp_path / "root-home"
    return {"HOME": str(home), "XDG_STATE_HOME": str(home / ".local" / "state")}


@pytest.mark.parametrize(
    "verb",
    [
        ("list",),
        ("enqueue", "gladd.noop"),
        ("show", "1"),
        ("cancel", "1"),
        ("retry", "1"),
        ("purge", "--older-than", "0s"),
    ],
)
def test_tasks_commands_on_a_store_that_is_not_there_fail_and_create_nothing(
    tmp_path: Path, verb: tuple[str, ...]
) -> None:
    env = {**another_user(tmp_path), "GLADD_POLICIES": str(REPO / "policies.toml")}
    default_db = tmp_path / "root-home" / ".local" / "state" / "gladd" / "gladd.db"

    done = run_cli("tasks", *verb, env=env)
    assert done.returncode == 69, done.stdout + done.stderr
    assert done.stdout == ""
    assert f"gladd: there is no SQLite database at {default_db} yet" in done.stderr
    assert "nothing was created" in done.stderr
    assert f"the state directory {default_db.parent}" in done.stderr
    assert "--env-file PATH (the service's: /etc/gladd/gladd.env)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "root-home").exists(), "a store (or its directory) was made"

    elsewhere = tmp_path / "typo" / "gladd.db"
    named = run_cli("tasks", *verb, "--database-url", f"sqlite:///{elsewhere}", env=env)
    assert named.returncode == 69
    assert f"no SQLite database at {elsewhere} yet" in named.stderr
    assert not elsewhere.parent.exists()


def test_db_migrate_is_the_one_command_that_creates_the_store(tmp_path: Path) -> None:
    env = {**another_user(tmp_path), "GLADD_POLICIES": str(REPO / "policies.toml")}
    made = run_cli("db", "migrate", env=env)
    assert made.returncode == 0, made.stderr
    listed = run_cli("tasks", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    db = tmp_path / "root-home" / ".local" / "state" / "gladd" / "gladd.db"
    assert listed.stdout.splitlines()[0] == f"store: sqlite:///{db}"


def service_env_file(node: LoggedGladd) -> Path:
    """What /etc/gladd/gladd.env holds on the service's host (the paths the unit sets)."""
    path = node.tmp / "gladd.env"
    path.write_text(f"GLADD_STATE_DIR={node.state_dir}\nGLADD_POLICIES={node.policies}\n")
    return path


def test_the_env_file_leads_the_cli_to_the_daemon_s_store(nodes: Nodes, tmp_path: Path) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies())
    node.start_serving()
    env_file = service_env_file(node)
    db = node.state_dir / "gladd.db"

    # GLADD_ENV_FILE stands in for the default /etc/gladd/gladd.env, as the unit's host has.
    by_default = {**another_user(tmp_path), "GLADD_ENV_FILE": str(env_file)}
    enqueued = run_cli("tasks", "enqueue", "gladd.noop", env=by_default)
    assert enqueued.returncode == 0, enqueued.stderr
    task_id = int(enqueued.stdout)

    def shown() -> Any:
        done = run_cli("tasks", "show", str(task_id), "--json", env=by_default)
        assert done.returncode == 0, done.stderr
        task = json.loads(done.stdout)
        return task if task["state"] == "succeeded" else None

    wait_until(shown, timeout=10, what="the daemon to run the task the CLI enqueued")

    # `sudo gladd --env-file /etc/gladd/gladd.env tasks list`: the same store, named.
    listed = run_cli("tasks", "list", "--env-file", str(env_file), env=another_user(tmp_path))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"store: sqlite:///{db}"
    assert f"{task_id:>8}  succeeded  gladd.noop" in lines[2]
    assert not (tmp_path / "root-home").exists()

    # A flag still beats the env file: the operator may always say which store.
    other = run_cli("tasks", "list", "--state-dir", str(tmp_path / "x"), env=by_default)
    assert other.returncode == 69
    assert f"the env file {env_file}, the state directory {tmp_path / 'x'}" in other.stderr
    code, log = node.stop()
    assert code == 0, log


def test_purge_dry_run_counts_and_state_chooses_what_goes(nodes: Nodes, tmp_path: Path) -> None:
    node = nodes("a")
    node.policies.write_text(executor_policies(extra=DEAD_LETTER.format(timeout="50ms")))
    node.start_serving()
    env = {"GLADD_ENV_FILE": str(service_env_file(node))}

    def cli(*args: str) -> Any:
        return run_cli("tasks", *args, env=env)

    def states() -> list[str]:
        listed = cli("list", "--json")
        assert listed.returncode == 0, listed.stderr
        return sorted(t["state"] for t in json.loads(listed.stdout))

    for _ in range(2):
        assert cli("enqueue", "gladd.noop").returncode == 0
    assert cli("enqueue", "gladd.sleep", "--payload", '{"seconds": 0.3}').returncode == 0
    later = int(cli("enqueue", "gladd.noop", "--delay", "1h").stdout)
    assert cli("cancel", str(later)).returncode == 0
    finished = ["cancelled", "dead", "succeeded", "succeeded"]
    wait_until(lambda: states() == finished, timeout=15, what="the tasks to finish")

    dry = cli("purge", "--older-than", "0s", "--dry-run")
    assert (dry.returncode, dry.stderr) == (0, "")
    assert dry.stdout == "would purge 4 cancelled/dead/succeeded task(s) older than 0s (dry run)\n"
    assert states() == finished, "a dry run deleted something"
    dry_dead = cli("purge", "--older-than", "0s", "--dry-run", "--state", "dead")
    assert dry_dead.stdout.startswith("would purge 1 dead task(s)")

    refused = cli("purge", "--older-than", "0s", "--state", "dead,pending")
    assert refused.returncode == 78
    assert refused.stderr == (
        "gladd: --state pending: purge deletes finished tasks only (succeeded, dead, "
        "cancelled); cancel a pending or running task first\n"
    )
    unknown = cli("purge", "--state", "finished")
    assert unknown.returncode == 65
    assert "unknown task state 'finished'" in unknown.stderr
    assert states() == finished

    dead = cli("purge", "--older-than", "0s", "--state", "dead")
    assert (dead.returncode, dead.stdout) == (0, "purged 1 dead task(s) older than 0s\n")
    assert states() == ["cancelled", "succeeded", "succeeded"]
    rest = cli("purge", "--older-than", "0s", "--state", "succeeded", "--state", "cancelled")
    assert rest.stdout == "purged 3 cancelled/succeeded task(s) older than 0s\n"
    assert states() == []
    code, log = node.stop()
    assert code == 0, log
