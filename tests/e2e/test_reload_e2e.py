"""Live reload through the real daemon, driven the ways editors, tools and deployments do it.

Each test runs a real ``gladd run`` on a real policies file, changes the file, and waits
(with a deadline) for ``/health`` to report the generation it expects.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    LoggedGladd,
    by_state,
    enqueue,
    executor_policies,
    free_port,
    run_cli,
    wait_until,
)

pytestmark = pytest.mark.e2e

SHIPPED = (Path(__file__).resolve().parents[2] / "policies.toml").read_text()


def edit(old: str, new: str, base: str = SHIPPED) -> str:
    assert base.count(old) == 1, f"{old!r} is not unique"
    return base.replace(old, new)


def short_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def policies_check(gladd: LoggedGladd) -> dict[str, Any]:
    response = gladd.get("/health")
    assert response.status_code == 200, response.text
    check: dict[str, Any] = response.json()["checks"]["policies:generation"][0]
    return check


def generation(gladd: LoggedGladd) -> int:
    return int(policies_check(gladd)["observedValue"])


def wait_generation(gladd: LoggedGladd, expected: int, timeout: float = 5.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        check = policies_check(gladd)
        return check if check["observedValue"] == expected else None

    try:
        return wait_until(reached, timeout=timeout, interval=0.02, what=f"generation {expected}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- gladd log ---\n{gladd.log()}") from None


def wait_status(gladd: LoggedGladd, status: str, timeout: float = 5.0) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        check = policies_check(gladd)
        return check if check["status"] == status else None

    try:
        return wait_until(reached, timeout=timeout, interval=0.02, what=f"policies {status}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- gladd log ---\n{gladd.log()}") from None


def wait_logged(gladd: LoggedGladd, text: str, timeout: float = 5.0) -> str:
    return wait_until(
        lambda: gladd.log() if text in gladd.log() else None,
        timeout=timeout,
        interval=0.02,
        what=f"{text!r} in the log",
    )


def reload_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if " - reload (" in line]


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "| ERROR " in line or "Traceback" in line]


def start_watching_elsewhere(gladd: LoggedGladd) -> Path:
    """Start gladd on a symlink to a file in a directory it does not watch: in-place edits
    of that file send it no event (only the 5 s check would see them), so an explicit
    reload made right after such an edit is the one that applies it."""
    real = gladd.tmp / "real"
    real.mkdir()
    (real / "policies.toml").write_text(SHIPPED)
    gladd.policies.unlink()
    gladd.policies.symlink_to(real / "policies.toml")
    gladd.start_ready()
    wait_logged(gladd, "watching ")
    # Past the watcher's catch-up check and its first periodic one: the test's edit and
    # reload then have the whole check interval to themselves, however busy the machine.
    wait_until(lambda: poll_checks(gladd) >= 2, timeout=15, what="two of the watcher's checks")
    return real / "policies.toml"


def poll_checks(gladd: LoggedGladd) -> float:
    """How often the watcher has looked at the file on its own and found nothing new."""
    for line in gladd.get("/metrics").text.splitlines():
        if line.startswith('gladd_reload_checks_total{trigger="poll"}'):
            return float(line.split()[-1])
    return 0.0


def write_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:  # the editor's way: truncate, write, close
        f.write(text)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def gladd(tmp_path: Path) -> Iterator[LoggedGladd]:
    instance = LoggedGladd(tmp_path)
    yield instance
    instance.close()


@pytest.fixture
def serving(gladd: LoggedGladd) -> LoggedGladd:
    """The daemon READY on the shipped policies, its watcher in place."""
    gladd.start_ready()
    wait_logged(gladd, "watching ")
    assert generation(gladd) == 1
    return gladd


# -- the ways a file changes ----------------------------------------------------------------


def test_an_in_place_edit_is_applied(serving: LoggedGladd) -> None:
    write_in_place(serving.policies, edit("concurrency = 10", "concurrency = 3"))

    check = wait_generation(serving, 2)
    assert check["status"] == "pass"
    log = wait_logged(serving, "executor.concurrency 10 → 3")
    assert "reload (file) applied: generation 2" in log
    assert error_lines(log) == []


def test_an_atomic_rename_save_is_applied(serving: LoggedGladd) -> None:
    new = edit("attempts = 4", "attempts = 6")
    write_atomically(serving.policies, new)

    check = wait_generation(serving, 2)
    assert short_sha(new) in check["output"]
    assert "retry.http.attempts 4 → 6" in wait_logged(serving, "retry.http.attempts")


def test_a_file_moved_in_from_another_directory_is_applied(
    serving: LoggedGladd, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "staging"
    elsewhere.mkdir()
    new = edit("concurrency = 10", "concurrency = 4")
    (elsewhere / "policies.toml").write_text(new)
    subprocess.run(["mv", str(elsewhere / "policies.toml"), str(serving.policies)], check=True)

    check = wait_generation(serving, 2)
    assert short_sha(new) in check["output"]


def test_a_deleted_then_recreated_file_is_waited_for_then_applied(serving: LoggedGladd) -> None:
    serving.policies.unlink()
    wait_logged(serving, "is gone for now")
    check = policies_check(serving)
    assert (check["observedValue"], check["status"]) == (1, "pass")  # still serving

    new = edit("concurrency = 10", "concurrency = 2")
    serving.policies.write_text(new)
    check = wait_generation(serving, 2)
    assert (check["status"], short_sha(new) in check["output"]) == ("pass", True)
    assert error_lines(serving.log()) == []


def test_a_kubernetes_configmap_symlink_swap_is_applied(gladd: LoggedGladd) -> None:
    # The kubelet's atomic writer: policies.toml -> ..data/policies.toml, ..data -> ..<stamp>;
    # an update writes a new ..<stamp> directory and re-points ..data with one rename.
    mount = gladd.tmp / "configmap"
    (mount / "..2026_v1").mkdir(parents=True)
    (mount / "..2026_v1" / "policies.toml").write_text(SHIPPED)
    (mount / "..data").symlink_to("..2026_v1")
    (mount / "policies.toml").symlink_to("..data/policies.toml")
    gladd.start_ready("--policies", str(mount / "policies.toml"))
    wait_logged(gladd, f"watching {mount} for changes to policies.toml")

    new = edit("concurrency = 10", "concurrency = 6")
    (mount / "..2026_v2").mkdir()
    (mount / "..2026_v2" / "policies.toml").write_text(new)
    (mount / "..data_tmp").symlink_to("..2026_v2")
    os.replace(mount / "..data_tmp", mount / "..data")

    check = wait_generation(gladd, 2)
    assert short_sha(new) in check["output"]
    assert "reload (file) applied: generation 2" in gladd.log()


def test_a_burst_of_saves_ends_serving_the_last_one_in_few_reloads(
    serving: LoggedGladd,
) -> None:
    for n in range(1, 21):
        text = edit("concurrency = 10", f"concurrency = {n}")
        if n % 2:
            write_atomically(serving.policies, text)
        else:
            write_in_place(serving.policies, text)
    last = short_sha(text)

    wait_until(
        lambda: last in policies_check(serving)["output"],
        timeout=5,
        interval=0.02,
        what="the last save served",
    )
    assert 2 <= generation(serving) <= 6  # coalesced: far fewer than 20 reloads
    log = serving.log()
    assert "executor.concurrency" in log
    assert error_lines(log) == []
    assert all(" applied: " in line for line in reload_lines(log)), reload_lines(log)


def test_a_touch_costs_no_reload(serving: LoggedGladd) -> None:
    before = reload_lines(serving.log())
    received = len(serving.notify.received)
    for _ in range(5):
        os.utime(serving.policies)
        time.sleep(0.1)
    time.sleep(0.3)  # the watcher settles in 50 ms; give it room to (not) act
    assert serving.get("/health").status_code == 200

    assert generation(serving) == 1
    assert reload_lines(serving.log()) == before
    with pytest.raises(AssertionError):
        serving.notify.wait_for("RELOADING", timeout=0.1)
    assert all("RELOADING" not in m for m in serving.notify.received[received:])


# -- refusals and recovery ------------------------------------------------------------------


def test_an_invalid_edit_changes_nothing_and_warns_with_the_location(
    serving: LoggedGladd,
) -> None:
    broken = edit("concurrency = 10", "concurrency = 0")
    write_in_place(serving.policies, broken)
    line = broken.splitlines().index("concurrency = 0") + 1
    error = f"{serving.policies}:{line}:15: executor.concurrency: must be ≥ 1 (got 0)"

    check = wait_status(serving, "warn")
    assert check["observedValue"] == 1
    assert error in check["output"]
    health = serving.get("/health")
    assert health.status_code == 200  # a warning, not a failure
    # The reload record moves with the generation check: no stale "applied" beside it.
    (last,) = health.json()["checks"]["policies:reload"]
    assert last["observedValue"] == "rejected"
    assert error in last["output"]
    log = wait_logged(serving, error)
    assert "reload (file) rejected: generation 1" in log


def test_a_fix_after_an_invalid_edit_is_applied_and_health_passes_again(
    serving: LoggedGladd,
) -> None:
    write_in_place(serving.policies, edit("concurrency = 10", "concurrency = 0"))
    wait_status(serving, "warn")

    write_in_place(serving.policies, edit("concurrency = 10", "concurrency = 5"))
    check = wait_generation(serving, 2)
    assert check["status"] == "pass"
    assert "executor.concurrency 10 → 5" in wait_logged(serving, "executor.concurrency 10 → 5")


def test_a_restart_only_change_is_refused_naming_the_field(serving: LoggedGladd) -> None:
    write_in_place(serving.policies, edit("pool_max_size = 10", "pool_max_size = 20"))

    check = wait_status(serving, "warn")
    assert check["observedValue"] == 1
    assert "database.pool_max_size 10 → 20: this field needs a restart" in check["output"]
    assert "database.pool_max_size 10 → 20" in wait_logged(serving, "needs a restart")


def test_a_sighup_reloads_and_tells_systemd(gladd: LoggedGladd) -> None:
    target = start_watching_elsewhere(gladd)
    assert gladd.process is not None

    write_in_place(target, edit("concurrency = 10", "concurrency = 3"))
    gladd.process.send_signal(signal.SIGHUP)

    reloading = gladd.notify.wait_for("RELOADING", timeout=5)
    assert reloading["RELOADING"] == "1"
    assert int(reloading["MONOTONIC_USEC"]) > 0
    ready = gladd.notify.wait_for("READY", timeout=5)
    assert ready["STATUS"].startswith("serving policies generation 2 (")
    assert generation(gladd) == 2
    log = wait_logged(gladd, "reload (signal) applied: generation 2")
    assert "SIGHUP received: reloading" in log


def test_a_sighup_with_an_invalid_file_still_answers_ready(serving: LoggedGladd) -> None:
    assert serving.process is not None
    write_in_place(serving.policies, edit("concurrency = 10", "concurrency = 0"))
    wait_status(serving, "warn")  # the watcher's reload, which told systemd already
    serving.notify.wait_for("READY", timeout=2)

    serving.process.send_signal(signal.SIGHUP)
    serving.notify.wait_for("RELOADING", timeout=5)
    ready = serving.notify.wait_for("READY", timeout=5)
    assert ready["STATUS"] == (
        f"serving policies generation 1 ({short_sha(SHIPPED)}) (last reload rejected)"
    )


def test_gladd_reload_exit_codes(serving: LoggedGladd) -> None:
    port = str(serving.port)
    same = run_cli("reload", "--admin-port", port)
    assert same.returncode == 0, same.stderr
    assert same.stdout.strip() == "unchanged; serving generation 1"

    broken = edit("concurrency = 10", "concurrency = 0")
    write_in_place(serving.policies, broken)
    wait_status(serving, "warn")
    refused = run_cli("reload", "--admin-port", port)
    assert refused.returncode == 78
    assert refused.stdout.strip() == "rejected; still serving generation 1"
    assert "executor.concurrency: must be ≥ 1 (got 0)" in refused.stderr
    assert str(serving.policies) in refused.stderr

    write_in_place(serving.policies, edit("concurrency = 10", "concurrency = 5"))
    wait_generation(serving, 2)
    fixed = run_cli("reload", "--admin-port", port)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "unchanged; serving generation 2"

    nobody = run_cli("reload", "--admin-port", str(free_port()))
    assert nobody.returncode == 69
    assert "Traceback" not in nobody.stderr


def test_gladd_reload_prints_the_applied_changes(gladd: LoggedGladd) -> None:
    target = start_watching_elsewhere(gladd)
    write_in_place(target, edit("attempts = 4", "attempts = 5"))

    done = run_cli("reload", "--admin-port", str(gladd.port))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "applied generation 2: retry.http.attempts 4 → 5",
        "  retry.http.attempts 4 → 5",
    ]


# -- starting from the last good copy -------------------------------------------------------


def test_use_last_good_starts_on_the_old_rules_when_the_file_is_broken(
    gladd: LoggedGladd,
) -> None:
    gladd.start_ready()
    code, _ = gladd.stop()
    assert code == 0
    assert (gladd.state_dir / "policies.last-good.toml").read_text() == SHIPPED
    broken = edit("concurrency = 10", "concurrency = 0")
    gladd.policies.write_text(broken)

    refused = gladd.start()
    assert refused.wait(timeout=15) == 78
    assert "executor.concurrency: must be ≥ 1 (got 0)" in gladd.log()

    ready = gladd.start_ready("--use-last-good")
    assert ready["STATUS"] == f"serving policies generation 1 ({short_sha(SHIPPED)})"
    check = policies_check(gladd)
    assert check["status"] == "warn"
    assert check["output"].startswith("serving the last good copy; on disk: ")
    assert "executor.concurrency: must be ≥ 1 (got 0)" in check["output"]
    assert "starting from the last good copy" in gladd.log()
    # The broken file was not made the last good copy.
    assert (gladd.state_dir / "policies.last-good.toml").read_text() == SHIPPED

    write_in_place(gladd.policies, edit("concurrency = 10", "concurrency = 5"))
    check = wait_generation(gladd, 2)
    assert check["status"] == "pass"


# -- a reload under load --------------------------------------------------------------------


def test_raising_concurrency_takes_effect_while_tasks_run(gladd: LoggedGladd) -> None:
    before = executor_policies(concurrency=1, poll_interval="100ms")
    gladd.policies.write_text(before)
    gladd.start_serving()
    with httpx.Client(timeout=5) as api:
        ids = [enqueue(api, gladd, "gladd.sleep", {"seconds": 1}) for _ in range(8)]
        wait_until(lambda: by_state(api, gladd, "running"), timeout=5, what="a task running")
        assert len(by_state(api, gladd, "running")) == 1

        write_in_place(gladd.policies, before.replace("concurrency = 1", "concurrency = 5"))
        wait_generation(gladd, 2)
        # Under the old limit of one, four never run at once, however long we wait.
        wait_until(
            lambda: len(by_state(api, gladd, "running")) >= 4,
            timeout=5,
            interval=0.02,
            what="several tasks running at once",
        )

        wait_until(
            lambda: len(by_state(api, gladd, "succeeded")) == len(ids),
            timeout=10,
            what="every task succeeded",
        )
        assert by_state(api, gladd, "dead") == []
    assert error_lines(gladd.log()) == []


def test_use_last_good_warning_clears_when_the_file_is_restored_to_the_last_good_copy(
    gladd: LoggedGladd,
) -> None:
    gladd.start_ready()
    assert gladd.stop()[0] == 0
    gladd.policies.write_text(edit("concurrency = 10", "concurrency = 0"))
    gladd.start_ready("--use-last-good")
    wait_logged(gladd, "watching ")
    assert policies_check(gladd)["status"] == "warn"

    write_in_place(gladd.policies, SHIPPED)  # what `git checkout policies.toml` does

    check = wait_status(gladd, "pass", timeout=3)
    assert check["observedValue"] == 1
    done = run_cli("reload", "--admin-port", str(gladd.port))
    assert (done.returncode, policies_check(gladd)["status"]) == (0, "pass")


# -- what else can sit at the policies path ---------------------------------------------------


def reload_cli(gladd: LoggedGladd) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = run_cli("reload", "--admin-port", str(gladd.port))
    assert time.monotonic() - started < 15, "gladd reload answers promptly"
    return done


def metric(gladd: LoggedGladd, line_start: str) -> float | None:
    for line in gladd.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return None


def rss_kib(gladd: LoggedGladd) -> int:
    assert gladd.process is not None
    status = Path(f"/proc/{gladd.process.pid}/status").read_text()
    (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1])


def test_a_fifo_at_the_path_is_refused_promptly_and_nothing_wedges(serving: LoggedGladd) -> None:
    serving.policies.unlink()
    os.mkfifo(serving.policies)  # nobody ever writes to it

    refused = reload_cli(serving)
    assert refused.returncode == 78, refused.stderr
    assert f"{serving.policies}: is a FIFO (named pipe), not a regular file" in refused.stderr
    check = wait_status(serving, "warn")
    assert "is a FIFO" in check["output"]

    serving.policies.unlink()  # a real file back, edited: it applies
    write_in_place(serving.policies, edit("concurrency = 10", "concurrency = 4"))
    assert wait_generation(serving, 2)["status"] == "pass"

    serving.policies.unlink()
    os.mkfifo(serving.policies)  # and once more, left there for the stop
    wait_status(serving, "warn")
    started = time.monotonic()
    code, log = serving.stop(timeout=20)
    assert code == 0, log
    assert time.monotonic() - started < 10


def test_a_symlink_to_dev_zero_is_refused_without_reading_it(serving: LoggedGladd) -> None:
    before = rss_kib(serving)
    serving.policies.unlink()
    serving.policies.symlink_to("/dev/zero")

    refused = reload_cli(serving)
    assert refused.returncode == 78, refused.stderr
    assert (
        f"{serving.policies}: is a character device (a symlink to /dev/zero), not a regular file"
        in refused.stderr
    )
    assert "is a character device" in wait_status(serving, "warn")["output"]
    assert reload_cli(serving).returncode == 78  # asked again: refused again, still no read
    assert serving.get("/health/live").status_code == 200
    assert rss_kib(serving) - before < 50 * 1024, "memory did not balloon"


def test_a_huge_file_is_refused_naming_its_size(serving: LoggedGladd) -> None:
    with serving.policies.open("r+b") as f:
        f.truncate(60 * 1024 * 1024)  # sparse, so the test writes nothing much

    refused = reload_cli(serving)
    assert refused.returncode == 78, refused.stderr
    assert f"{serving.policies}: is 60 MiB, over the 4 MiB limit for a policies file" in (
        refused.stderr
    )
    assert policies_check(serving)["observedValue"] == 1


def test_putting_the_file_back_clears_every_surface(serving: LoggedGladd) -> None:
    port = str(serving.port)
    write_in_place(serving.policies, edit("concurrency = 10", "concurrency = 0"))
    wait_status(serving, "warn")
    assert metric(serving, "gladd_reload_last_success") == 0
    assert "last reload rejected" in run_cli("status", "--admin-port", port).stdout

    write_in_place(serving.policies, SHIPPED)  # exactly what is served
    wait_status(serving, "pass")
    same = reload_cli(serving)
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith("unchanged; serving generation 1")

    health = serving.get("/health").json()["checks"]
    assert health["policies:reload"][0]["observedValue"] == "unchanged"
    assert health["policies:generation"][0]["status"] == "pass"
    status = run_cli("status", "--admin-port", port)
    assert "rejected" not in status.stdout, status.stdout
    assert "policies:" not in status.stdout  # no policies alert listed
    assert metric(serving, "gladd_reload_last_success") == 1


def test_rejected_reload_problems_are_each_a_log_line_with_time_and_level(
    serving: LoggedGladd,
) -> None:
    broken = edit("concurrency = 10", "concurrency = 0")
    write_in_place(serving.policies, edit("attempts = 4", "attempts = 0", broken))
    wait_status(serving, "warn")
    log = wait_logged(serving, "reload rejected, 2 of 2: ")

    lines = [line for line in log.splitlines() if "must be ≥ 1 (got 0)" in line]
    assert len(lines) == 2
    assert all("| ERROR " in line and line[:4].isdigit() for line in lines), lines


def test_the_watchers_idle_checks_are_not_counted_as_reloads(serving: LoggedGladd) -> None:
    # The watcher's catch-up check runs as soon as its watch is in place.
    wait_until(
        lambda: metric(serving, 'gladd_reload_checks_total{trigger="poll"}'),
        timeout=10,
        what="a poll check counted",
    )
    body = serving.get("/metrics").text
    assert 'gladd_reloads_total{outcome="unchanged",trigger="poll"}' not in body
    assert 'gladd_reloads_total{outcome="applied",trigger="start"} 1.0' in body


@pytest.mark.parametrize("kind", ["fifo", "directory", "huge"])
def test_gladd_check_refuses_what_is_not_a_policies_file_promptly(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "policies.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        with path.open("wb") as f:
            f.truncate(60 * 1024 * 1024)
    started = time.monotonic()
    done = run_cli("check", str(path))
    assert time.monotonic() - started < 15
    assert done.returncode == 78, done.stderr
    expected = {
        "fifo": "is a FIFO (named pipe), not a regular file",
        "directory": "is a directory, not a regular file",
        "huge": "is 60 MiB, over the 4 MiB limit",
    }[kind]
    assert f"{path}: {expected}" in done.stderr
    assert "Traceback" not in done.stderr
