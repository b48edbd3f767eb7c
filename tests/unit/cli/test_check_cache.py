"""The verdict cache's own rules: expiry by the caller's clock, runs whose inputs changed
while they ran, the bound on entries, what is read from the environment."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pytest

from gladd import settings
from gladd.cli import check_cache
from gladd.cli.check import run_check
from gladd.cli.check_cache import Reads, Recording, RecordingEnviron, prune, replay, store


def args(path: Path, **flags: object) -> argparse.Namespace:
    given = {"env_file": None, "allow_broken_plugins": False, "json": False, "no_cache": False}
    return argparse.Namespace(path=path, **{**given, **flags})


def recorded(text: str) -> Recording:
    with Recording() as recording:
        print(text)
    return recording


def test_the_service_env_file_is_the_settings_one() -> None:
    assert Path(check_cache.SERVICE_ENV_FILE) == settings.SERVICE_ENV_FILE


def test_a_verdict_is_replayed_until_the_first_fire_time_it_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reads = Reads({})
    reads.expire_at(2_000.0)
    reads.expire_at(1_000.0)  # the earliest of the schedules' first ticks
    reads.expire_at(3_000.0)
    assert store(
        "k",
        recorded("next 1970-01-01 00:16 UTC"),
        0,
        reads,
        started_ns=time.time_ns(),
        directory=str(tmp_path),
    )
    capsys.readouterr()
    assert replay("k", now=999.999, directory=str(tmp_path)) == 0
    assert capsys.readouterr().out == "next 1970-01-01 00:16 UTC\n"
    assert replay("k", now=1_000.0, directory=str(tmp_path)) is None
    assert capsys.readouterr().out == ""


def test_a_run_whose_input_changed_while_it_ran_is_not_kept(tmp_path: Path) -> None:
    policies = tmp_path / "policies.toml"
    started = time.time_ns()
    policies.write_text("schema_version = 1\n")  # saved by an editor mid-run
    reads = Reads({})
    reads.contents.append(str(policies))
    assert not store(
        "k", recorded("OK"), 0, reads, started_ns=started, directory=str(tmp_path / "c")
    )
    assert not (tmp_path / "c").exists()
    os.utime(policies, ns=(started - 10**9, started - 10**9))
    assert store("k", recorded("OK"), 0, reads, started_ns=started, directory=str(tmp_path / "c"))


def test_stdout_and_stderr_are_replayed_in_the_order_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Recording() as recording:
        print("head")
        print("gladd: broken", file=sys.stderr)
        print("tail")
    assert recording.chunks == [
        (0, "head"),
        (0, "\n"),
        (1, "gladd: broken"),
        (1, "\n"),
        (0, "tail"),
        (0, "\n"),
    ]
    capsys.readouterr()
    store("k", recording, 78, Reads({}), started_ns=time.time_ns(), directory=str(tmp_path))
    assert replay("k", directory=str(tmp_path)) == 78
    assert capsys.readouterr() == ("head\ntail\n", "gladd: broken\n")


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"{n}.json").write_text("{}")
        os.utime(tmp_path / f"{n}.json", ns=(n * 10**9, n * 10**9))
    (tmp_path / "left.json.7.tmp").write_text("")
    os.utime(tmp_path / "left.json.7.tmp", ns=(0, 0))
    prune(str(tmp_path), keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2.json", "3.json", "4.json"]


def test_a_full_cache_directory_stays_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "gladd" / "check"
    for n in range(check_cache.MAX_ENTRIES + 5):
        policies = tmp_path / f"p{n}.toml"
        policies.write_text(f"schema_version = 1\n[executor]\nconcurrency = {n + 1}\n")
        os.utime(policies, ns=(10**18, 10**18))
        reads = Reads({})
        reads.contents.append(str(policies))
        store(f"k{n}", recorded(str(n)), 0, reads, started_ns=time.time_ns())
    assert len(list(cache.iterdir())) == check_cache.MAX_ENTRIES


def test_plugin_settings_are_read_by_name_and_remembered() -> None:
    environ = RecordingEnviron({"MAIL_TOKEN": "s3cret", "OTHER": "x"})
    assert environ.get("MAIL_TOKEN") == "s3cret"
    assert environ.get("MISSING") is None
    assert "ALSO_MISSING" not in environ
    assert environ.read == {"MAIL_TOKEN": "s3cret", "MISSING": None, "ALSO_MISSING": None}
    assert not environ.read_all
    assert dict(environ) == {"MAIL_TOKEN": "s3cret", "OTHER": "x"}
    assert environ.read_all, "iterating reads every variable"


def test_secrets_are_never_stored_in_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLADD_ADMIN_TOKEN", "hunter2-token")
    reads = Reads({"MAIL_TOKEN": "hunter2-mail"})
    reads.environ.get("MAIL_TOKEN")
    key = check_cache.verdict_key(args(tmp_path / "policies.toml"))
    assert key is not None
    store(key, recorded("OK"), 0, reads, started_ns=time.time_ns(), directory=str(tmp_path))
    [entry] = tmp_path.glob("*.json")
    assert "hunter2" not in entry.read_text()
    assert oct(entry.stat().st_mode & 0o777) == "0o600"


def test_the_key_follows_the_flags_and_the_settings_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "policies.toml"
    base = check_cache.verdict_key(args(path))
    assert base == check_cache.verdict_key(args(path))
    assert base != check_cache.verdict_key(args(path, json=True))
    assert base != check_cache.verdict_key(args(path, allow_broken_plugins=True))
    assert base != check_cache.verdict_key(args(tmp_path / "other.toml"))
    monkeypatch.setenv("gladd_plugin_paths", str(tmp_path))  # pydantic-settings: any case
    assert base != check_cache.verdict_key(args(path))
    monkeypatch.delenv("gladd_plugin_paths")
    monkeypatch.setenv("UNRELATED", "1")
    assert base == check_cache.verdict_key(args(path))


def test_an_env_file_that_cannot_be_read_is_never_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.env"
    assert check_cache.verdict_key(args(tmp_path / "p.toml", env_file=missing)) is None
    monkeypatch.setenv("GLADD_ENV_FILE", str(missing))
    assert check_cache.verdict_key(args(tmp_path / "p.toml")) is None
    (tmp_path / "p.toml").write_text("schema_version = 1\n")
    assert run_check(args(tmp_path / "p.toml")) == 78
    assert "env file not found" in capsys.readouterr().err
    assert not (Path(os.environ["XDG_CACHE_HOME"]) / "gladd").exists()


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", "/home/operator")
    assert check_cache.cache_dir() == "/home/operator/.cache/gladd/check"


def test_an_entry_of_another_format_is_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store("k", recorded("OK"), 0, Reads({}), started_ns=time.time_ns(), directory=str(tmp_path))
    entry = tmp_path / "k.json"
    entry.write_text(
        json.dumps({**json.loads(entry.read_text()), "format": check_cache.FORMAT + 1})
    )
    capsys.readouterr()
    assert replay("k", directory=str(tmp_path)) is None
