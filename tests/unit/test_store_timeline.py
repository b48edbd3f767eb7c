"""The timeline's pure parts: the bound every store keeps (gladd.store.timeline), and the
lines ``gladd tasks show`` prints for each entry (gladd.cli.timeline)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gladd.cli.timeline import describe_entry, timeline_lines
from gladd.store import Failed, Released, Succeeded, TaskError, TimelineEntry
from gladd.store import timeline as tl

BASE = datetime(2026, 12, 4, 18, 31, 2, 114000, tzinfo=UTC)


def _numbered(n: int) -> list[dict[str, object]]:
    return [tl.entry(BASE + timedelta(seconds=i), "claimed", token=i) for i in range(n)]


def test_a_short_timeline_is_kept_whole() -> None:
    entries = _numbered(tl.HEAD + tl.TAIL)
    assert tl.bounded(entries) == entries


def test_a_long_one_keeps_its_head_and_tail_and_counts_the_rest() -> None:
    entries = _numbered(tl.HEAD + tl.TAIL + 7)
    kept = tl.bounded(entries)
    assert kept[: tl.HEAD] == entries[: tl.HEAD]
    assert kept[tl.HEAD] == {"at": entries[tl.HEAD + 6]["at"], "event": "dropped", "count": 7}
    assert kept[tl.HEAD + 1 :] == entries[-tl.TAIL :]


def test_appending_to_a_bounded_timeline_adds_to_the_count() -> None:
    once = tl.bounded(_numbered(tl.HEAD + tl.TAIL + 3))
    more = tl.bounded([*once, *_numbered(2)])
    assert len(more) == tl.HEAD + 1 + tl.TAIL
    assert more[tl.HEAD]["count"] == 5
    assert json.loads(tl.append_json(json.dumps(once), json.dumps(_numbered(2)))) == more


def test_outcomes_say_how_the_attempt_ended() -> None:
    error = TaskError(type="ValueError", message="boom", attempt=2, at=BASE)
    failed = Failed(id=1, token=3, error=error, retry_at=BASE + timedelta(seconds=5), duration=0.5)
    assert tl.outcome_entries(failed, at=BASE) == [
        {
            "at": BASE.isoformat(),
            "event": "attempt ended",
            "outcome": "failed",
            "duration": 0.5,
            "error": "ValueError: boom",
            "until": (BASE + timedelta(seconds=5)).isoformat(),
        }
    ]
    snoozed = Released(id=1, token=3, run_at=BASE, reason="snooze")
    assert [e["event"] for e in tl.outcome_entries(snoozed, at=BASE)] == [
        "attempt ended",
        "snoozed",
    ]
    assert tl.outcome_entries(Succeeded(id=1, token=3), at=BASE)[0]["outcome"] == "succeeded"


def _entry(event: str, **fields: object) -> TimelineEntry:
    return TimelineEntry(at=BASE, event=event, fields=fields)


def test_each_entry_reads_as_a_sentence() -> None:
    until = (BASE + timedelta(seconds=30)).isoformat()
    said = {
        "created": ("from cli", {"source": "cli"}),
        "claimed": ("by node-a (token 3)", {"node": "node-a", "token": 3}),
        "attempt started": ("attempt 2", {"attempt": 2}),
        "postponed": (
            "breaker (breaker b for svc is open) until 18:31:32.114",
            {"reason": "breaker", "why": "breaker b for svc is open", "until": until},
        ),
        "snoozed": ("until 18:31:32.114", {"until": until}),
        "rescued": (
            "from node-a (owner dead), now pending",
            {"node": "node-a", "why": "owner dead", "state": "pending"},
        ),
        "fenced": (
            "late succeeded from node-a (token 1) discarded",
            {"node": "node-a", "token": 1, "outcome": "succeeded"},
        ),
        "retried": ("by 127.0.0.1 (token)", {"by": "127.0.0.1 (token)"}),
        "dropped": ("… 12 entries dropped", {"count": 12}),
    }
    for event, (text, fields) in said.items():
        assert describe_entry(_entry(event, **fields)) == text, event
    ended = _entry(
        "attempt ended",
        attempt=1,
        outcome="failed",
        duration=0.25,
        error="ValueError: boom",
        until=until,
    )
    assert describe_entry(ended) == (
        "attempt 1 failed after 0.250s: ValueError: boom; retry until 18:31:32.114"
    )


def test_tasks_show_aligns_the_lines_and_dates_each_day() -> None:
    entries = (
        _entry("claimed", node="node-a", token=3),
        TimelineEntry(at=BASE + timedelta(days=1), event="cancelled", fields={}),
    )
    assert timeline_lines(entries) == [
        "  timeline (UTC):",
        "    2026-12-04",
        "    18:31:02.114  claimed           by node-a (token 3)",
        "    2026-12-05",
        "    18:31:02.114  cancelled",
    ]
    assert timeline_lines(()) == []


def test_sqlites_append_joins_text_until_the_bound_and_then_bounds_exactly() -> None:
    # An error text holding the key itself (escaped in JSON) only ever overcounts.
    tricky = tl.entry(BASE, "attempt ended", error='KeyError: "event": x')
    timeline = "[]"
    stored: list[dict[str, object]] = []
    for n in range(tl.HEAD + tl.TAIL + 12):
        new = [tricky] if n % 2 else _numbered(1)
        timeline = tl.append_json(timeline, json.dumps(new, separators=(",", ":")))
        stored = tl.bounded([*stored, *new])
        assert json.loads(timeline) == stored, n


def test_a_successs_entries_formatted_directly_are_what_the_dicts_encode_to() -> None:
    for duration in (None, 0.1234567, 3.0):
        ok = Succeeded(id=1, token=2, duration=duration)
        fast = tl.outcome_json(ok, at=BASE, at_text=BASE.isoformat())
        assert json.loads(fast) == tl.outcome_entries(ok, at=BASE)
