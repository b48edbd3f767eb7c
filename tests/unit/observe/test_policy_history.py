"""The policies history ring: generations newest first with their diffs, the bound, huge
files, and the last rejection standing then resolved. Times are given, so they are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gladd.observe.policy_history import MAX_KEPT_TEXT, PolicyHistory, unified_diff

T0 = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)
V1 = b'[executor]\nconcurrency = 10\nlease = "30s"\n'
V2 = b'[executor]\nconcurrency = 12\nlease = "30s"\n'


def started(size: int = 50) -> PolicyHistory:
    history = PolicyHistory(size=size)
    history.applied(generation=1, at=T0, trigger="start", sha256="a" * 64, source="p.toml", data=V1)
    return history


def test_a_generation_carries_its_diff_against_the_one_before() -> None:
    history = started()
    later = T0 + timedelta(seconds=30)
    history.applied(
        generation=2,
        at=later,
        trigger="file",
        sha256="b" * 64,
        source="p.toml",
        data=V2,
        changes=["executor.concurrency 10 → 12"],
    )

    newest, first = history.generations()
    assert (newest.generation, newest.trigger, newest.at) == (2, "file", later)
    assert newest.changes == ("executor.concurrency 10 → 12",)
    assert newest.diff == (
        "--- generation 1\n+++ generation 2\n@@ -1,3 +1,3 @@\n"
        " [executor]\n-concurrency = 10\n+concurrency = 12\n" + ' lease = "30s"\n'
    )
    assert first.diff is None
    assert "nothing to compare with" in first.diff_note
    assert history.served_text == V2.decode()
    body = history.to_json(limit=1)
    assert [g["generation"] for g in body["generations"]] == [2]
    assert body["generations"][0]["at"] == "2026-12-04T18:00:30+00:00"


def test_the_ring_keeps_the_newest_and_diffs_survive_eviction() -> None:
    history = started(size=3)
    for number in range(2, 7):
        data = V1.replace(b"10", str(number).encode())
        history.applied(
            generation=number,
            at=T0 + timedelta(minutes=number),
            trigger="signal",
            sha256=str(number) * 64,
            source="p.toml",
            data=data,
        )

    kept = history.generations()
    assert [g.generation for g in kept] == [6, 5, 4]
    assert kept[-1].diff is not None
    assert "-concurrency = 3\n+concurrency = 4\n" in kept[-1].diff
    assert history.to_json()["kept"] == 3


def test_a_huge_file_keeps_its_sha_but_not_its_text() -> None:
    history = started()
    huge = b"# " + b"x" * MAX_KEPT_TEXT + b"\n"
    history.applied(generation=2, at=T0, trigger="api", sha256="c" * 64, source="p.toml", data=huge)
    history.applied(generation=3, at=T0, trigger="api", sha256="d" * 64, source="p.toml", data=V2)

    third, second, _ = history.generations()
    assert second.sha256 == "c" * 64
    assert second.text is None
    assert second.diff is None
    assert second.diff_note == "no diff: the text of generation 2 was too large to keep"
    assert "only its sha256 is kept" in second.to_json()["text_note"]
    assert second.to_json()["text_kept"] is False
    assert third.diff is None
    assert third.diff_note == "no diff: the text of generation 2 was too large to keep"
    assert history.served_text == V2.decode()  # the served file is shown whole regardless


def test_a_rejection_stands_until_a_generation_is_applied() -> None:
    history = started()
    errors = ["p.toml:2:15: executor.concurrency: must be at least 1"]
    history.rejected(at=T0, trigger="file", sha256="e" * 64, errors=errors, generation=1)
    standing = history.to_json()["last_rejection"]
    assert standing == {
        "at": "2026-12-04T18:00:00+00:00",
        "trigger": "file",
        "sha256": "e" * 64,
        "errors": errors,
        "generation_served": 1,
        "standing": True,
        "resolved_at": None,
        "resolved_by": "",
    }

    fixed_at = T0 + timedelta(minutes=1)
    history.applied(
        generation=2, at=fixed_at, trigger="file", sha256="b" * 64, source="p.toml", data=V2
    )
    rejection = history.last_rejection
    assert rejection is not None
    assert not rejection.standing
    assert rejection.resolved_at == fixed_at
    assert rejection.resolved_by == "generation 2 applied"
    assert rejection.errors == tuple(errors)  # still shown, marked resolved


def test_putting_the_file_back_resolves_without_a_new_generation() -> None:
    history = started()
    history.rejected(at=T0, trigger="signal", sha256="e" * 64, errors=["x"], generation=1)
    back = T0 + timedelta(seconds=5)
    history.resolve(at=back, by="the file put back to generation 1")
    history.resolve(at=back + timedelta(seconds=5), by="later")  # already resolved: kept

    assert history.last_rejection is not None
    assert history.last_rejection.resolved_at == back
    assert history.last_rejection.resolved_by == "the file put back to generation 1"
    assert [g.generation for g in history.generations()] == [1]


def test_a_diff_of_a_file_without_a_last_newline_stays_line_per_line() -> None:
    diff = unified_diff("a = 1", "a = 2", old_name="old", new_name="new")
    assert diff.splitlines() == ["--- old", "+++ new", "@@ -1 +1 @@", "-a = 1", "+a = 2"]
    assert unified_diff("same\n", "same\n", old_name="o", new_name="n") == ""
