"""The policies generations a daemon has served since it started, and its last rejection.

A bounded ring, newest last: each generation with its time, trigger, sha256, the changes
the reloader rendered, and a unified diff of the file's text against the generation before
it (computed when it is recorded, so it survives the older one leaving the ring). The text
is kept per generation only up to :data:`MAX_KEPT_TEXT` bytes: a bigger file keeps its
sha256 and says why its text and diffs are missing. The last rejection is kept too, with
whether it still stands (the file on disk is still the rejected one) or was resolved (a
generation applied since, or the file put back to the served one).

Pure: every time is given (``at``), nothing is read from the clock or the disk.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

HISTORY_SIZE = 50
"""Generations kept; older ones leave the ring."""

MAX_KEPT_TEXT = 256 * 1024
"""Bytes of a generation's file text kept for diffs; a bigger file keeps only its sha256."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation:
    """One served generation of the policies."""

    generation: int
    at: datetime
    trigger: str  # start, file, poll, signal (SIGHUP) or api (POST /reload, gladd reload)
    sha256: str
    source: str  # the file it was read from
    size: int  # bytes
    changes: tuple[str, ...] = ()  # as the reloader renders them
    text: str | None = None  # None: over MAX_KEPT_TEXT (or no file), see ``text_note``
    diff: str | None = None  # against the generation before; None: see ``diff_note``
    diff_note: str = ""

    @property
    def text_note(self) -> str:
        if self.text is not None:
            return ""
        return (
            f"the file ({self.size} bytes) is over the {MAX_KEPT_TEXT // 1024} KiB kept per "
            "generation: only its sha256 is kept"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "at": self.at.isoformat(),
            "trigger": self.trigger,
            "sha256": self.sha256,
            "source": self.source,
            "size": self.size,
            "changes": list(self.changes),
            "diff": self.diff,
            "diff_note": self.diff_note,
            "text_kept": self.text is not None,
            "text_note": self.text_note,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    """The last reload refused; the served generation stayed."""

    at: datetime
    trigger: str
    sha256: str  # of the refused file ("" when it could not be read)
    errors: tuple[str, ...]  # each "FILE:LINE:COL: ..." where the problem has a place
    generation: int  # still served
    resolved_at: datetime | None = None
    resolved_by: str = ""  # "generation N applied", or the file put back

    @property
    def standing(self) -> bool:
        return self.resolved_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "trigger": self.trigger,
            "sha256": self.sha256,
            "errors": list(self.errors),
            "generation_served": self.generation,
            "standing": self.standing,
            "resolved_at": None if self.resolved_at is None else self.resolved_at.isoformat(),
            "resolved_by": self.resolved_by,
        }


def kept_text(data: bytes) -> str | None:
    """The text kept for ``data``: None when it is over :data:`MAX_KEPT_TEXT`."""
    if len(data) > MAX_KEPT_TEXT:
        return None
    return data.decode("utf-8", errors="replace")


def unified_diff(old: str, new: str, *, old_name: str, new_name: str) -> str:
    """``old`` → ``new`` as ``diff -u`` prints it ("" when the texts are equal)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_name,
        tofile=new_name,
    )
    # A last line without its newline would run into the next hunk header when printed.
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class PolicyHistory:
    """The ring of generations (newest last) and the last rejection."""

    __slots__ = ("_generations", "_last_text", "last_rejection", "served_text")

    def __init__(self, *, size: int = HISTORY_SIZE) -> None:
        self._generations: deque[Generation] = deque(maxlen=size)
        self._last_text: str | None = None  # the newest generation's kept text
        self.last_rejection: Rejection | None = None
        self.served_text = ""
        """The served generation's whole file (what ``GET /policies`` shows)."""

    @property
    def served(self) -> Generation | None:
        return self._generations[-1] if self._generations else None

    def generations(self, limit: int | None = None) -> list[Generation]:
        """Newest first, at most ``limit``."""
        newest_first = list(reversed(self._generations))
        return newest_first if limit is None else newest_first[:limit]

    def applied(
        self,
        *,
        generation: int,
        at: datetime,
        trigger: str,
        sha256: str,
        source: str,
        data: bytes,
        changes: Sequence[str] = (),
    ) -> Generation:
        """A generation is served; it resolves a standing rejection."""
        text = kept_text(data)
        previous = self.served
        diff: str | None = None
        note = ""
        if previous is None:
            note = "the first generation since the daemon started: nothing to compare with"
        elif text is None or self._last_text is None:
            too_big = previous.generation if self._last_text is None else generation
            note = f"no diff: the text of generation {too_big} was too large to keep"
        else:
            diff = unified_diff(
                self._last_text,
                text,
                old_name=f"generation {previous.generation}",
                new_name=f"generation {generation}",
            )
        entry = Generation(
            generation=generation,
            at=at,
            trigger=trigger,
            sha256=sha256,
            source=source,
            size=len(data),
            changes=tuple(changes),
            text=text,
            diff=diff,
            diff_note=note,
        )
        self._generations.append(entry)
        self._last_text = text
        self.served_text = data.decode("utf-8", errors="replace")
        self.resolve(at=at, by=f"generation {generation} applied")
        return entry

    def rejected(
        self,
        *,
        at: datetime,
        trigger: str,
        sha256: str,
        errors: Sequence[str],
        generation: int,
    ) -> Rejection:
        """A reload was refused: it is the last rejection, standing."""
        self.last_rejection = Rejection(
            at=at, trigger=trigger, sha256=sha256, errors=tuple(errors), generation=generation
        )
        return self.last_rejection

    def resolve(self, *, at: datetime, by: str) -> None:
        """The standing rejection (if any) no longer stands."""
        if self.last_rejection is not None and self.last_rejection.standing:
            self.last_rejection = replace(self.last_rejection, resolved_at=at, resolved_by=by)

    def to_json(self, limit: int | None = None) -> dict[str, Any]:
        """``GET /policies/history``'s body."""
        return {
            "generations": [g.to_json() for g in self.generations(limit)],
            "kept": self._generations.maxlen,
            "last_rejection": None
            if self.last_rejection is None
            else self.last_rejection.to_json(),
        }
