"""``gladd check`` lists each schedule's next fire times and refuses schedules it cannot run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gladd.cli import main
from gladd.cli.check_verdict import describe_schedule
from gladd.policies import SchedulePolicy

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def test_a_cron_schedule_shows_its_next_three_times_local_and_utc() -> None:
    s = SchedulePolicy(cron="0 3 * * *", timezone="Europe/Berlin", kind="crm.sync")
    assert describe_schedule("nightly-crm-sync", s, NOW) == (
        'schedule nightly-crm-sync: cron "0 3 * * *" Europe/Berlin → crm.sync; next '
        "2026-12-04 03:00 CET (02:00 UTC), 2026-12-05 03:00 CET (02:00 UTC), "
        "2026-12-06 03:00 CET (02:00 UTC)"
    )


def test_the_utc_date_is_shown_when_it_differs_and_seconds_when_they_count() -> None:
    s = SchedulePolicy(cron="30 0 * * *", timezone="Europe/Berlin", kind="k")
    assert "2026-12-04 00:30 CET (2026-12-03 23:30 UTC)" in describe_schedule("s", s, NOW)
    every = SchedulePolicy.model_validate({"every": "90s", "kind": "k"})
    assert describe_schedule("t", every, NOW) == (
        "schedule t: every 1m30s UTC → k; next 2026-12-03 12:01:30 UTC, "
        "2026-12-03 12:03 UTC, 2026-12-03 12:04:30 UTC"
    )


def test_a_paused_schedule_says_so() -> None:
    s = SchedulePolicy.model_validate({"every": "1h", "kind": "k", "paused": True})
    assert describe_schedule("off", s, NOW) == "schedule off: every 1h UTC → k; paused"


@pytest.fixture
def policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GLADD_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "policies.toml"
    path.write_text(
        '[schedules.nightly]\ncron = "0 3 * * *"\ntimezone = "Europe/Berlin"\n'
        'kind = "gladd.sleep"\n\n[schedules.typo]\nevery = "1h"\nkind = "gladd.slep"\n'
    )
    return path


def test_a_schedule_of_an_unknown_kind_fails_the_check_located(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(policies)]) == 78
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{policies}: policies OK, schedules not"
    assert '  schedule nightly: cron "0 3 * * *" Europe/Berlin → gladd.sleep; next ' in out
    assert (f"{policies}:8:8: schedules.typo.kind: no task kind 'gladd.slep' is known") in err
    # Not a plugin problem: --allow-broken-plugins does not let it through.
    assert main(["check", str(policies), "--allow-broken-plugins"]) == 78


def test_json_lists_the_schedules_and_their_problems(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(policies), "--json"]) == 78
    verdict = json.loads(capsys.readouterr().out)
    schedules = verdict["schedules"]
    assert schedules["ok"] is False
    [error] = schedules["errors"]
    assert (error["line"], error["column"], error["key"]) == (8, 8, "schedules.typo.kind")
    nightly, typo = schedules["schedules"]
    assert nightly["name"] == "nightly"
    assert nightly["cron"] == "0 3 * * *"
    assert nightly["every"] is None
    assert nightly["timezone"] == "Europe/Berlin"
    assert len(nightly["next"]) == 3
    berlin = ZoneInfo("Europe/Berlin")
    for text in nightly["next"]:
        tick = datetime.fromisoformat(text)
        assert tick.utcoffset() == timedelta(0)
        assert (tick.astimezone(berlin).hour, tick.minute) == (3, 0)
    assert typo["every"] == "1h"


def test_a_good_file_with_schedules_is_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLADD_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "policies.toml"
    path.write_text('[schedules.s]\nevery = "1h"\nkind = "gladd.noop"\n')
    assert main(["check", str(path)]) == 0


FLOW = """\
[services.example]
hosts = ["example.invalid"]

[limits.crm]
rate = "10/s"
partition = "tenant"

[tasks."http.request"]
concurrency = 2
partition = "account_id"
limits = ["crm"]

[tasks."gladd.noop"]
limits = ["crm"]

[tasks."gladd.sleep"]
concurrency = 1
partition = "seconds"

[schedules.typo]
every = "1h"
kind = "gladd.slep"
"""


def test_partitions_are_checked_against_the_shipped_plugins_kinds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLADD_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "policies.toml"
    path.write_text(FLOW)
    assert main(["check", str(path)]) == 78
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{path}: policies OK, schedules and flow control not"
    assert "  plugins:        http (http.request)" in out
    fields = "body, expect, headers, json, json_body, method, params, service, url"
    assert err.splitlines() == [
        f"{path}:6:13: limits.crm.partition: kind http.request's payload has no field "
        f"'tenant' (its fields: {fields}); declare the field in the kind's payload model "
        "(Request in plugin http), or partition by one it has",
        f"{path}:6:13: limits.crm.partition: kind gladd.noop has no payload schema, so "
        "nothing says its payloads carry 'tenant'; declare the field in the kind's payload "
        "model (TaskKind(payload=...) in gladd itself), or remove partition",
        f'{path}:10:13: tasks."http.request".partition: kind http.request\'s payload '
        f"has no field 'account_id' (its fields: {fields}); declare the field in the kind's "
        "payload model (Request in plugin http), or partition by one it has",
        f"{path}:22:8: schedules.typo.kind: no task kind 'gladd.slep' is known "
        "(known kinds: gladd.noop, gladd.sleep, http.request)",
    ]


def test_json_lists_flow_control_problems_apart_from_the_schedules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLADD_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "policies.toml"
    path.write_text(FLOW)
    assert main(["check", str(path), "--json"]) == 78
    verdict = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in verdict["schedules"]["errors"]] == ["schedules.typo.kind"]
    assert verdict["flow"]["ok"] is False
    assert [(e["line"], e["column"], e["key"]) for e in verdict["flow"]["errors"]] == [
        (6, 13, "limits.crm.partition"),
        (6, 13, "limits.crm.partition"),
        (10, 13, 'tasks."http.request".partition'),
    ]


def test_a_partition_on_a_declared_field_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLADD_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "policies.toml"
    path.write_text(
        '[services.example]\nhosts = ["example.invalid"]\n\n[limits.hosts]\nconcurrency = 4\n'
        'partition = "url"\n\n[tasks."http.request"]\nrate = "100/s"\nburst = 10\n'
        'partition = "service"\nlimits = ["hosts"]\n'
    )
    assert main(["check", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["flow"] == {"ok": True, "errors": []}


def test_flow_control_mistakes_in_the_file_are_each_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLADD_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "policies.toml"
    path.write_text(
        '[limits.crm]\nconcurrency = 5\n\n[tasks."crm.sync"]\nrate = "0/s"\n'
        'limits = ["crm", "accounts"]\nburst = 4\n\n[tasks."crm.push"]\npartition = "id"\n'
    )
    assert main(["check", str(path)]) == 78
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        f"{path}:5:8: tasks.\"crm.sync\".rate: '0/s' allows nothing: the count and the "
        "period must be above 0",
        f"{path}: 1 problem",
    ]
    path.write_text(path.read_text().replace('"0/s"', '"1/s"').replace("burst = 4\n", ""))
    assert main(["check", str(path)]) == 78
    _, err = capsys.readouterr()
    assert err.splitlines() == [
        f'{path}:6:10: tasks."crm.sync".limits[1]: no [limits.accounts] is defined (defined: crm)',
        f'{path}:9:13: tasks."crm.push".partition: partitions nothing: the kind sets '
        "neither concurrency nor rate; set one (it then applies per value of the field), or "
        "remove partition",
        f"{path}: 2 problems",
    ]
