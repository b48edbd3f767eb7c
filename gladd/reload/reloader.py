"""The reload pipeline: read → parse → validate → diff → swap, one reload at a time.

Every trigger (the file watcher, SIGHUP, ``POST /reload``, ``gladd reload``) asks the one
:class:`Reloader`; requests that arrive while a reload runs are coalesced into the next
one, and each caller gets the verdict of a reload that read the file *after* it asked.

The file is read bounded (a regular file, at most 4 MiB, within 5 s: see
:mod:`gladd.policies.read`), so no file put at the path can wedge reloads or shutdown.
New policies are taken in Caddy's order: the daemon's ``prepare`` sets up everything that
can fail against them, touching no live state, and returns a ``commit`` made of steps that
cannot fail, which then swaps them in. Anything that fails before the commit changes
nothing: the daemon keeps serving the last good generation, the last good copy is left
alone, and the reason is in the log, in ``/health`` (warn) and in ``gladd reload``'s answer.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import TaskStatus
from loguru import logger

from gladd.errors import PolicyError, Problem
from gladd.observe.reloads import ReloadOutcome
from gladd.policies import LoadedPolicies, Policies, parse_policies, placed
from gladd.policies.read import read_policies_file_async
from gladd.reload.diff import Change, diff_policies

WATCH_TRIGGERS = frozenset({"file", "poll"})
"""Triggers that fire on mere file events: same content again is not worth a word."""
SETTLE = 0.05
"""Seconds new content must stay the same before a reload not sent by the watcher (which
waits for quiet itself) uses it: a file caught mid-write is read again once it is whole."""
MAX_SETTLE_ROUNDS = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """The policies generation being served."""

    generation: int
    loaded: LoadedPolicies

    def describe(self) -> str:
        return f"policies generation {self.generation} ({self.loaded.sha256[:12]})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadResult:
    outcome: ReloadOutcome
    trigger: str
    generation: int  # the generation served after this reload
    sha256: str  # of the content read ("" when the file could not be read)
    changes: tuple[Change, ...] = ()
    errors: tuple[str, ...] = ()
    seconds: float = 0.0
    resolved: bool = False
    """Unchanged, and it ended a standing rejection: the file is the served one again."""

    @property
    def is_check(self) -> bool:
        """A watcher's look that found nothing new: not what an operator calls a reload."""
        return self.trigger in WATCH_TRIGGERS and self.outcome == "unchanged" and not self.resolved

    def summary(self) -> str:
        if self.outcome == "applied":
            shown = "; ".join(c.render() for c in self.changes) or "no effective change"
            return f"applied generation {self.generation}: {shown}"
        if self.outcome == "rejected":
            return f"rejected; still serving generation {self.generation}"
        if self.resolved:
            return (
                f"unchanged; serving generation {self.generation}, which the file is again "
                "(the last rejection no longer stands)"
            )
        return f"unchanged; serving generation {self.generation}"


@dataclass(slots=True)
class _Round:
    """One reload's worth of coalesced requests."""

    triggers: list[str] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)
    result: ReloadResult | None = None


Commit = Callable[[], None]
"""Takes prepared policies live; made only of steps that cannot fail."""
Prepare = Callable[[Served, list[Change]], Commit]
"""Sets up everything the new generation needs without touching live state; raises
:class:`PolicyError` (with every problem) to refuse it."""
ReloadListener = Callable[[ReloadResult], None]
"""Told every reload's result (the record in :mod:`gladd.observe.reloads`, the log)."""


class Reloader:
    """Owns the served generation's successor: ``request()`` or ``await reload()``."""

    def __init__(
        self,
        *,
        path: Path,
        served: Callable[[], Served],
        prepare: Prepare,
        last_good: Path | None = None,
        listeners: list[ReloadListener] | None = None,
        on_start: Callable[[], None] | None = None,
        check: Callable[[Policies], list[Problem]] | None = None,
        settle: float = SETTLE,
        read: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        self.path = path
        self.settle = settle
        self._read = read or (lambda: read_policies_file_async(path))
        self.served = served
        self.prepare = prepare
        self.last_good = last_good
        self.listeners = listeners or []
        self.on_start = on_start
        self.check = check
        self.rejected_sha: str | None = None  # content of the last rejected reload
        self.last_rejection: ReloadResult | None = None  # while the file stays broken
        self._next = _Round()
        self._wanted = anyio.Event()

    def request(self, trigger: str) -> _Round:
        """Ask for a reload; returns the round whose ``done`` event signals the verdict."""
        round_ = self._next
        round_.triggers.append(trigger)
        self._wanted.set()
        return round_

    async def reload(self, trigger: str) -> ReloadResult:
        """Ask for a reload and wait for its verdict."""
        round_ = self.request(trigger)
        await round_.done.wait()
        assert round_.result is not None
        return round_.result

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            round_, self._next = self._next, _Round()
            try:
                round_.result = await self._reload(round_.triggers)
            except Exception as exc:  # a bug (a commit step failed): report it, keep reloading
                logger.exception("reload failed while applying the new policies")
                round_.result = ReloadResult(
                    outcome="rejected",
                    trigger=round_.triggers[0],
                    generation=self.served().generation,
                    sha256="",
                    errors=(f"internal error while applying: {type(exc).__name__}: {exc}",),
                )
            finally:
                round_.done.set()

    async def _reload(self, triggers: list[str]) -> ReloadResult:
        # An explicit trigger names the reload; file events only if nothing else asked.
        trigger = next((t for t in triggers if t not in WATCH_TRIGGERS), triggers[0])
        started = time.perf_counter()
        current = self.served()
        try:
            data = await self._read()
        except (OSError, PolicyError) as exc:
            return self._unreadable(trigger, current, exc, started)
        sha = hashlib.sha256(data).hexdigest()
        if self._nothing_new(sha, trigger, current):
            return self._unchanged(sha, trigger, current, started)
        if trigger != "file" and self.settle > 0:
            try:
                data, sha = await self._settled(data, sha)
            except (OSError, PolicyError) as exc:
                return self._unreadable(trigger, current, exc, started)
            if self._nothing_new(sha, trigger, current):  # the writer put it back
                return self._unchanged(sha, trigger, current, started)
        if self.on_start:
            self.on_start()
        result = self._evaluate(data, sha, trigger, current, started)
        return self._finish(result, quiet=False)

    def _nothing_new(self, sha: str, trigger: str, current: Served) -> bool:
        """The content served, or (for file events) the content last rejected."""
        if sha == current.loaded.sha256:
            self.rejected_sha = None  # the file is back to what we serve
            return True
        return trigger in WATCH_TRIGGERS and sha == self.rejected_sha

    def _unchanged(self, sha: str, trigger: str, current: Served, started: float) -> ReloadResult:
        # Put back after a rejection: every surface that reported it must now say so.
        resolved = self.last_rejection is not None and sha == current.loaded.sha256
        result = ReloadResult(
            outcome="unchanged",
            trigger=trigger,
            generation=current.generation,
            sha256=sha,
            seconds=time.perf_counter() - started,
            resolved=resolved,
        )
        return self._finish(result, quiet=not resolved)

    async def _settled(self, data: bytes, sha: str) -> tuple[bytes, str]:
        """The file's content once it stays the same for ``settle`` seconds (bounded)."""
        for _ in range(MAX_SETTLE_ROUNDS):
            await anyio.sleep(self.settle)
            again = await self._read()
            again_sha = hashlib.sha256(again).hexdigest()
            if again_sha == sha:
                break
            data, sha = again, again_sha
        return data, sha

    def _evaluate(
        self, data: bytes, sha: str, trigger: str, current: Served, started: float
    ) -> ReloadResult:
        try:
            loaded = parse_policies(data, source=str(self.path))
        except PolicyError as exc:
            errors = tuple(p.render(exc.file) for p in exc.problems)
            return self._rejected(trigger, current, sha, errors, started)
        problems = placed(self.check(loaded.policies), loaded) if self.check else []
        if problems:
            errors = tuple(p.render(str(self.path)) for p in problems)
            return self._rejected(trigger, current, sha, errors, started)
        changes = diff_policies(current.loaded.policies, loaded.policies)
        needs_restart = [c for c in changes if c.restart]
        if needs_restart:
            errors = tuple(
                f"{self.path}: {c.render()}: this field needs a restart; restart gladd to "
                "apply it, or put it back"
                for c in needs_restart
            )
            return self._rejected(trigger, current, sha, errors, started)
        served = Served(generation=current.generation + 1, loaded=loaded)
        try:
            commit = self.prepare(served, changes)
        except PolicyError as exc:
            errors = tuple(p.render(exc.file) for p in exc.problems)
            return self._rejected(trigger, current, sha, errors, started)
        commit()
        self.rejected_sha = None
        self._keep_last_good(data)
        return ReloadResult(
            outcome="applied",
            trigger=trigger,
            generation=served.generation,
            sha256=sha,
            changes=tuple(changes),
            seconds=time.perf_counter() - started,
        )

    def _rejected(
        self, trigger: str, current: Served, sha: str, errors: tuple[str, ...], started: float
    ) -> ReloadResult:
        self.rejected_sha = sha
        return ReloadResult(
            outcome="rejected",
            trigger=trigger,
            generation=current.generation,
            sha256=sha,
            errors=errors,
            seconds=time.perf_counter() - started,
        )

    def _unreadable(
        self, trigger: str, current: Served, exc: OSError | PolicyError, started: float
    ) -> ReloadResult:
        gone = ReloadResult(
            outcome="unchanged", trigger=trigger, generation=current.generation, sha256=""
        )
        if trigger in WATCH_TRIGGERS and isinstance(exc, FileNotFoundError):
            # Mid-way through a delete-and-recreate or a symlink swap: wait for the file.
            logger.info("{} is gone for now; keeping {}", self.path, current.describe())
            return self._finish(gone, quiet=True)
        if isinstance(exc, PolicyError):  # refused: not a regular file, too big, too slow
            errors = tuple(p.render(exc.file) for p in exc.problems)
        else:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror
            errors = (f"{self.path}: {reason}",)
        standing = self.last_rejection
        if trigger in WATCH_TRIGGERS and standing is not None and standing.errors == errors:
            # The watcher's next look at the same unreadable file: the warning stands.
            return self._finish(gone, quiet=True)
        return self._finish(self._rejected(trigger, current, "", errors, started), quiet=False)

    def _finish(self, result: ReloadResult, *, quiet: bool) -> ReloadResult:
        if result.outcome == "rejected":
            self.last_rejection = result
        elif result.outcome == "applied" or self.rejected_sha is None:
            self.last_rejection = None  # applied, or the file is back to what we serve
        if not quiet:
            self._log(result)
        for listener in self.listeners:
            listener(result)
        return result

    def _log(self, result: ReloadResult) -> None:
        head = (
            f"reload ({result.trigger}) {result.outcome}: generation {result.generation}, "
            f"sha256 {result.sha256[:12] or '-'}, {result.seconds * 1000:.1f} ms"
        )
        if result.outcome == "applied":
            shown = "; ".join(c.render() for c in result.changes) or "no effective change"
            logger.info("{}: {}", head, shown)
        elif result.outcome == "rejected":
            # One record per problem, each with its time and level (never continuation lines).
            lines = [line for error in result.errors for line in error.splitlines()]
            count = len(lines)
            logger.error("{}; nothing changed, {} problem{}:", head, count, "s"[: count != 1])
            for number, line in enumerate(lines, start=1):
                logger.error("reload rejected, {} of {}: {}", number, count, line)
        elif result.resolved:
            logger.info("{}: the file is the served generation again; the rejection is over", head)
        else:
            logger.info("{}", head)

    def _keep_last_good(self, data: bytes) -> None:
        if self.last_good is not None:
            write_last_good(self.last_good, data)


def write_last_good(path: Path, data: bytes) -> None:
    """Keep an accepted policies file for ``gladd run --use-last-good``, atomically."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not keep the last good policies at {}: {}", path, exc.strerror)
