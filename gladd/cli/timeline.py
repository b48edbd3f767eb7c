"""A task's timeline as ``gladd tasks show`` prints it: one aligned line per entry,
``18:31:02.114  claimed           by node-a (token 3)``, times in UTC, a date line whenever
the day changes (issue 14)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from gladd.store import TimelineEntry
from gladd.store import timeline as tl

_EVENT_WIDTH = max(len(event) for event in tl.EVENTS)


def timeline_lines(entries: Sequence[TimelineEntry]) -> list[str]:
    """The lines of ``entries``, indented under a ``timeline (UTC):`` heading; none when
    there are none (a task from before timelines were kept)."""
    if not entries:
        return []
    lines = ["  timeline (UTC):"]
    day: date | None = None
    for e in entries:
        if e.at.date() != day:
            day = e.at.date()
            lines.append(f"    {day.isoformat()}")
        said = describe_entry(e)
        lines.append(f"    {_clock(e.at)}  {e.event:<{_EVENT_WIDTH}}  {said}".rstrip())
    return lines


def describe_entry(e: TimelineEntry) -> str:
    """What an entry says beyond its event: ``by node-a (token 3)``."""
    render = _RENDER.get(e.event)
    return render(e.fields) if render is not None else _plain(e.fields)


def _clock(at: datetime) -> str:
    return f"{at:%H:%M:%S}.{at.microsecond // 1000:03d}"


def _until(fields: Mapping[str, Any]) -> str:
    raw = fields.get("until")
    if raw is None:
        return ""
    return f"until {_clock(datetime.fromisoformat(str(raw)))}"


def _by(fields: Mapping[str, Any]) -> str:
    return f"by {fields['by']}" if fields.get("by") else ""


def _created(fields: Mapping[str, Any]) -> str:
    return f"from {fields.get('source', 'python')}"


def _claimed(fields: Mapping[str, Any]) -> str:
    return f"by {fields.get('node')} (token {fields.get('token')})"


def _started(fields: Mapping[str, Any]) -> str:
    return f"attempt {fields.get('attempt')}"


def _ended(fields: Mapping[str, Any]) -> str:
    text = f"attempt {fields.get('attempt')} {fields.get('outcome')}"
    if (duration := fields.get("duration")) is not None:
        text += f" after {float(duration):.3f}s"
    if error := fields.get("error"):
        text += f": {error}"
    if until := _until(fields):
        text += f"; retry {until}"
    return text


def _postponed(fields: Mapping[str, Any]) -> str:
    parts = [str(fields.get("reason", "?"))]
    if why := fields.get("why"):
        parts.append(f"({why})")
    if until := _until(fields):
        parts.append(until)
    return " ".join(parts)


def _rescued(fields: Mapping[str, Any]) -> str:
    return f"from {fields.get('node')} ({fields.get('why')}), now {fields.get('state')}"


def _fenced(fields: Mapping[str, Any]) -> str:
    return (
        f"late {fields.get('outcome')} from {fields.get('node') or 'an earlier owner'} "
        f"(token {fields.get('token')}) discarded"
    )


def _dropped(fields: Mapping[str, Any]) -> str:
    return f"… {fields.get('count')} entries dropped"


def _plain(fields: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in fields.items())


_RENDER: dict[str, Callable[[Mapping[str, Any]], str]] = {
    tl.CREATED: _created,
    tl.CLAIMED: _claimed,
    tl.ATTEMPT_STARTED: _started,
    tl.ATTEMPT_ENDED: _ended,
    tl.POSTPONED: _postponed,
    tl.SNOOZED: _until,
    tl.RESCUED: _rescued,
    tl.FENCED: _fenced,
    tl.CANCEL_REQUESTED: _by,
    tl.CANCELLED: _by,
    tl.RETRIED: _by,
    tl.DROPPED: _dropped,
}
