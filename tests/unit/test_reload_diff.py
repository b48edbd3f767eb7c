"""The reload diff as an operator reads it: paths, values as written, restart-only flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from gladd.policies import Policies, parse_policies
from gladd.reload.diff import Change, diff_policies

SHIPPED = (Path(__file__).resolve().parents[2] / "policies.toml").read_text()


def policies(text: str) -> Policies:
    return parse_policies(text.encode(), source="policies.toml").policies


def edited(*replacements: tuple[str, str], extra: str = "") -> Policies:
    text = SHIPPED
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not unique in the shipped policies"
        text = text.replace(old, new)
    return policies(text + extra)


def rendered(new: Policies, old: Policies | None = None) -> list[str]:
    return [c.render() for c in diff_policies(old or policies(SHIPPED), new)]


def test_no_change_is_an_empty_list() -> None:
    assert diff_policies(policies(SHIPPED), policies(SHIPPED)) == []


def test_comments_and_layout_are_no_change() -> None:
    reordered = "# only a comment\n" + SHIPPED.replace("concurrency = 10", "concurrency   =   10")
    assert diff_policies(policies(SHIPPED), policies(reordered)) == []


def test_a_changed_number_shows_old_and_new() -> None:
    assert rendered(edited(("attempts = 4", "attempts = 5"))) == ["retry.http.attempts 4 → 5"]


@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        ('base_delay = "200ms"', 'base_delay = "500ms"', "retry.http.base_delay 200ms → 500ms"),
        ('lease = "30s"', 'lease = "1h30m"', "executor.lease 30s → 1h30m"),
        ('retention = "7d"', 'retention = "2d"', "executor.retention 7d → 2d"),
    ],
)
def test_durations_are_shown_as_written_not_as_seconds(old: str, new: str, shown: str) -> None:
    assert rendered(edited((old, new))) == [shown]


def test_lists_and_strings_are_shown_as_written_in_path_order() -> None:
    lists_and_strings = edited(
        ('on = ["connect", "timeout", "reset"]', 'on = ["connect"]'),
        (
            'backoff = "exponential"\nbase_delay = "200ms"',
            'backoff = "linear"\nbase_delay = "200ms"',
        ),
    )
    assert rendered(lists_and_strings) == [
        'retry.db.on ["connect", "timeout", "reset"] → ["connect"]',
        "retry.http.backoff exponential → linear",
    ]


def test_an_added_named_table_is_one_change_not_one_per_field() -> None:
    added = edited(extra='\n[breaker.cloudinary]\nfailures = 3\nopen_for = "10s"\n')
    assert rendered(added) == ["breaker.cloudinary added"]
    assert rendered(policies(SHIPPED), added) == ["breaker.cloudinary removed"]


def test_a_renamed_table_is_a_removal_and_an_addition() -> None:
    renamed = edited(("[services.example]", "[services.imgproxy]"))
    assert sorted(rendered(renamed)) == ["services.example removed", "services.imgproxy added"]


def test_task_kinds_with_dots_are_quoted_in_the_path() -> None:
    assert rendered(edited(('timeout = "1m"', 'timeout = "2m"'))) == [
        'tasks."gladd.sleep".timeout 1m → 2m'
    ]
    assert rendered(edited(extra='\n[tasks."acme.resize"]\npriority = 5\n')) == [
        'tasks."acme.resize" added'
    ]


def test_an_aliased_field_shows_its_file_name() -> None:
    held = edited(
        (
            'utilization = { warn = 0.8, critical = 0.95, for = "30s" }',
            'utilization = { warn = 0.8, critical = 0.95, for = "1m" }',
        )
    )
    assert rendered(held) == ["pool_alerts.utilization.for 30s → 1m"]


def test_changes_come_in_the_order_the_model_declares_them() -> None:
    both = edited(("attempts = 4", "attempts = 5"), ("concurrency = 10", "concurrency = 3"))
    assert rendered(both) == ["executor.concurrency 10 → 3", "retry.http.attempts 4 → 5"]


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("pool_max_size = 10", "pool_max_size = 20", "database.pool_max_size"),
        ("pool_min_size = 1", "pool_min_size = 2", "database.pool_min_size"),
    ],
)
def test_restart_only_fields_are_flagged(old: str, new: str, path: str) -> None:
    (change,) = diff_policies(policies(SHIPPED), edited((old, new)))
    assert change.path == path
    assert change.restart is True


def test_hot_fields_are_not_flagged_restart() -> None:
    changes = diff_policies(
        policies(SHIPPED),
        edited(
            ("concurrency = 10", "concurrency = 3"),
            ('retry = "db"', 'retry = "http"'),  # hot, like query_timeout below
            ('query_timeout = "5s"', 'query_timeout = "2s"'),
            ("attempts = 4", "attempts = 5"),
            extra="\n[breaker.cloudinary]\n",
        ),
    )
    assert {c.path: c.restart for c in changes} == {
        "executor.concurrency": False,
        "database.query_timeout": False,
        "database.retry": False,
        "retry.http.attempts": False,
        "breaker.cloudinary": False,
    }


def test_a_change_renders_without_the_restart_flag() -> None:
    # The flag is for the reloader to act on; the rendering stays the plain diff line.
    change = Change(path="database.pool_max_size", kind="changed", old=10, new=20, restart=True)
    assert change.render() == "database.pool_max_size 10 → 20"
