"""The errors gladd raises, as one tree.

::

    GladdError                      root: catch this to catch anything of ours
    ├── ConfigError                 an operator's configuration is wrong
    │   ├── PolicyError             policies.toml: carries every Problem (file, line, key path)
    │   └── SettingsError           settings from flags, environment or env file
    ├── StartupError                a subsystem could not start (e.g. admin port in use)
    ├── ResilienceError             the resilience engine refused or gave up on a call
    │   ├── BreakerOpen             the circuit is open (or isolated): failed fast, no fallback
    │   ├── BulkheadFull            no slot of a service's max_in_flight came within max_wait
    │   │   └── RateLimited         no token of a service's outbound rate came within max_wait
    │   ├── ServiceCooldown         a service said 429/503 + Retry-After: nothing sent until then
    │   ├── RetriesExhausted        retrying stopped; ``__cause__`` is the last attempt's error
    │   │   └── RetryBudgetExhausted  the shared retry budget forbade another retry
    │   └── ResilienceTimeout       a timeout the guard imposed (also a ``TimeoutError``)
    │       ├── AttemptTimeout      one attempt ran past its own timeout
    │       └── TotalTimeout        the call ran past its total deadline (all attempts + sleeps)
    ├── StoreError                  the task store failed; chained ``from`` the driver error
    │   ├── StoreUnavailable        cannot reach the database (down, refused, bad password)
    │   ├── StoreNotFound           no store there, and the caller may not create one
    │   ├── StoreUnusable           a corrupt file or not a database: retrying cannot help
    │   └── UnknownTask             no task with that id
    │       ├── UnknownSchedule     no schedule of that name in the policies
    │       └── UnknownPauseTarget  no kind, service or limit of that name to pause
    ├── StopIncomplete              a stop left tasks unreleased (they wait for a rescue)
    ├── SyncClientError             a SyncClient used inside an event loop or after close()
    │                               (also a ``RuntimeError``)
    ├── TaskRejected                an enqueue refused: unknown kind or invalid payload
    │   ├── BatchRejected           a batch refused, nothing stored: carries every ItemProblem
    │   └── BatchTooLarge           a batch of more tasks than its limit: nothing stored
    ├── TaskStateConflict           cancel or retry refused: the task's state does not allow it
    │   └── UniqueKeyHeld           retry refused: another unfinished task holds its unique_key
    ├── TaskTimeout                 a task attempt ran past its timeout (also a TimeoutError)
    ├── WaitTimeout                 a wait for a task ended before the task did (also a
    │                               TimeoutError); carries the task as last read
    └── PluginError                 an integration plugin, or a call it made, failed
        ├── PluginLoadError         a plugin could not be imported or validated: refused
        └── ServiceCallError        a plugin's call to a service failed (names plugin, service)
            ├── ServiceRefused      a non-retryable answer (401, 404, 422...): task dead
            ├── ServiceUnavailable  a retryable answer (5xx, 429) after the transport's retries
            └── ServiceTimeout      the service did not answer in time (also a TimeoutError)

``ServiceCallError`` and its subclasses live in :mod:`gladd.plugins.errors`, since they
also derive from the executor's ``FailTask`` and the transport's ``RetryableStatus``. An operator
mistake is always a ``ConfigError`` or ``StartupError`` with a one-line message that says
what is wrong, where, and how to fix it; the CLI prints it without a traceback.

Beside the tree, a task handler's control-flow signals: not failures of gladd, so they are
plain ``Exception`` subclasses, outside ``GladdError`` (a handler's ``except GladdError``
must not swallow them). They live in :mod:`gladd.executor.kinds`, are exported as
``gladd.Snooze`` / ``gladd.RetryLater`` / ``gladd.FailTask``, and the executor reads them
when it decides an attempt's outcome (:mod:`gladd.executor.decide`)::

    Exception
    ├── Snooze                      not now: run again after ``seconds``, no attempt spent
    ├── RetryLater                  this attempt failed: retry after exactly ``seconds``
    │                               (attempts and the retry deadline permitting)
    └── FailTask                    this can never succeed: the task is dead at once
        └── ServiceRefused          (also a ``ServiceCallError``, above)

The plugin boundary (:mod:`gladd.plugins.boundary`) raises them on a plugin's behalf: a
service's ``Retry-After`` becomes ``RetryLater``, an open breaker ``Snooze``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class GladdError(Exception):
    """Root of every error gladd raises on purpose."""


class ConfigError(GladdError):
    """The configuration an operator wrote is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong in a policies file, located as precisely as we can."""

    path: str
    """Dotted key path, e.g. ``retry.http.attempts``; empty for file-level problems."""
    message: str
    line: int | None = None
    column: int | None = None

    def render(self, file: str) -> str:
        where = file
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(ConfigError):
    """A policies file that cannot be used; ``problems`` lists every error found."""

    def __init__(self, file: str, problems: Sequence[Problem]) -> None:
        self.file = file
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render(file) for p in self.problems))


class SettingsError(ConfigError):
    """A setting (flag, ``GLADD_*`` variable or env-file entry) is invalid."""


class StartupError(GladdError):
    """A subsystem could not start; the message says which and why."""


class ResilienceError(GladdError):
    """The resilience engine refused a call or gave up on it."""


class BreakerOpen(ResilienceError):
    """A circuit breaker is open (or isolated) and no fallback answered."""

    def __init__(self, breaker: str, state: str, retry_in: float | None) -> None:
        self.breaker = breaker
        self.state = state
        self.retry_in = retry_in
        when = f"; next probe in {retry_in:.3g}s" if retry_in is not None else ""
        super().__init__(f"circuit breaker {breaker!r} is {state}: call failed fast{when}")


class BulkheadFull(ResilienceError):
    """No slot of service ``service``'s ``max_in_flight`` came free within ``max_wait``.

    Local overload, not a sick service: it never counts against a breaker, the request's
    retry policy does not retry it (nothing was sent), and the executor releases the task
    to run again later without spending an attempt.
    """

    setting = "max_in_flight"

    def __init__(self, service: str, limit: float, max_wait: float) -> None:
        self.service = service
        self.limit = limit
        self.max_wait = max_wait
        super().__init__(self._describe())

    def _describe(self) -> str:
        return (
            f"service {self.service!r}: all {self.limit:g} request slots (max_in_flight) "
            f"stayed busy for max_wait {self.max_wait:g}s; nothing was sent. Raise "
            f"[services.{self.service}] max_in_flight or max_wait if the service can take more"
        )


class RateLimited(BulkheadFull):
    """No token of service ``service``'s outbound ``rate`` (``limit`` requests a second,
    per node) came within ``max_wait``. A :class:`BulkheadFull`, so one ``except`` catches
    both kinds of local overload."""

    setting = "rate"

    def _describe(self) -> str:
        return (
            f"service {self.service!r}: its outbound rate of {self.limit:g}/s gave no token "
            f"within max_wait {self.max_wait:g}s; nothing was sent. Raise "
            f"[services.{self.service}] rate or max_wait if the service allows more"
        )


class ServiceCooldown(ResilienceError):
    """Service ``service`` asked us to back off (HTTP 429 or 503 with ``Retry-After``):
    nothing is sent to it from this node before ``until`` (timezone-aware UTC).

    ``status`` is the answer that began the cooldown (None when it began elsewhere, e.g.
    on another node). The executor releases the task to run at ``until`` without spending
    an attempt.
    """

    def __init__(self, service: str, until: datetime, status: int | None, reason: str = "") -> None:
        self.service = service
        self.until = until
        self.status = status
        self.reason = reason
        why = f" ({reason})" if reason else ""
        at = until.astimezone(UTC)
        super().__init__(
            f"service {service!r} is cooling down until {at:%Y-%m-%dT%H:%M:%S}Z{why}: "
            "nothing is sent to it until then"
        )


class RetriesExhausted(ResilienceError):
    """Retrying stopped; ``__cause__`` (and ``last``) is the last attempt's error."""

    def __init__(self, policy: str, attempts: int, reason: str, last: BaseException) -> None:
        self.policy = policy
        self.attempts = attempts
        self.reason = reason
        self.last = last
        super().__init__(
            f"retry policy {policy!r} gave up after {attempts} attempt(s) ({reason}): "
            f"{type(last).__name__}: {last}"
        )


class RetryBudgetExhausted(RetriesExhausted):
    """The retry budget shared by every caller of the policy forbade another retry."""


class ResilienceTimeout(ResilienceError, TimeoutError):
    """A timeout the guard imposed; the awaited work was cancelled."""

    def __init__(self, policy: str, after: float, attempt: int) -> None:
        self.policy = policy
        self.after = after
        self.attempt = attempt
        super().__init__(self._describe())

    def _describe(self) -> str:
        return f"{self.policy!r}: timed out after {self.after:.3g}s"


class AttemptTimeout(ResilienceTimeout):
    """One attempt ran past its own timeout."""

    def _describe(self) -> str:
        return f"{self.policy!r}: attempt {self.attempt} timed out after {self.after:.3g}s"


class TotalTimeout(ResilienceTimeout):
    """The call ran past its total deadline, which covers every attempt and every sleep."""

    def _describe(self) -> str:
        return (
            f"{self.policy!r}: total deadline of {self.after:.3g}s reached "
            f"during attempt {self.attempt}"
        )


class StoreError(GladdError):
    """The task store failed; ``__cause__`` holds the driver's error."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refuses us; retrying later may succeed."""


class StoreNotFound(StoreError):
    """The configured store does not exist (no SQLite file, or a database without gladd's
    tables) and the caller opened it without ``create``: pointed at the wrong place, most
    likely. Nothing was created."""


class StoreUnusable(StoreError):
    """The database is not one gladd can use — a corrupt file, or not a database at all —
    and retrying will not change that: restore it from a backup or point gladd elsewhere."""


class UnknownTask(StoreError):
    """No task has the given id."""


class UnknownSchedule(UnknownTask):
    """No ``[schedules.NAME]`` of that name in the policies served (a 404, exit 66, like an
    unknown task)."""


class UnknownPauseTarget(UnknownTask):
    """A pause or resume names no kind, service, limit or cooldown gladd knows (a 404,
    exit 66, like an unknown task); nothing was changed."""


class StopIncomplete(GladdError):
    """The daemon stopped but could not release every running task; the message names
    them (they return to pending by a lease rescue)."""


class SyncClientError(GladdError, RuntimeError):
    """A :class:`~gladd.SyncClient` call that cannot be made: from inside a running event
    loop (it would block that loop; ``await`` a ``gladd.Client`` there), or after
    ``close()``. Nothing was sent to the store."""


class TaskRejected(GladdError):
    """An enqueue was refused before anything was stored; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemProblem:
    """Why one item of a batch enqueue was refused."""

    index: int
    """The item's position in the batch, from 0."""
    field: str
    """The field at fault (``kind``, ``payload``, ``delay``...); empty for the item itself."""
    message: str

    def render(self) -> str:
        where = f"item {self.index}: {self.field}" if self.field else f"item {self.index}"
        return f"{where}: {self.message}"


class BatchRejected(TaskRejected):
    """A batch enqueue refused because some of its items were: nothing of it was stored.
    ``problems`` lists every refused item (each refused for its first problem, as a single
    enqueue of it would be), in item order."""

    def __init__(self, problems: Sequence[ItemProblem], *, size: int) -> None:
        self.problems = tuple(problems)
        self.size = size
        refused = len({p.index for p in self.problems})
        lines = [f"batch of {size} refused, nothing stored: {refused} item(s) refused"]
        super().__init__("\n".join([*lines, *(p.render() for p in self.problems)]))


class BatchTooLarge(TaskRejected):
    """A batch enqueue of more items than ``limit``: nothing of it was stored."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"a batch may hold at most {limit} tasks (got {size}): split it; nothing was stored"
        )


class TaskStateConflict(GladdError):
    """Cancel or retry refused because of the task's state (a finished task cannot be
    cancelled, only a dead or cancelled one retried); nothing was changed."""

    def __init__(self, task_id: int, state: str, allowed: str, verb: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(f"task {task_id} is {state}; only {allowed} tasks can be {verb}")


class UniqueKeyHeld(TaskStateConflict):
    """A retry refused because another unfinished task holds the same ``unique_key``; the
    same retry succeeds once that task has finished. Nothing was changed."""

    def __init__(self, task_id: int, key: str, holder: int) -> None:
        self.task_id = task_id
        self.key = key
        self.holder = holder
        GladdError.__init__(
            self,
            f"task {task_id} cannot be retried: task {holder} with the same unique_key "
            f"{key!r} is still unfinished",
        )


class TaskTimeout(GladdError, TimeoutError):
    """A task attempt ran past its timeout and was cancelled (retried as a timeout)."""


class WaitTimeout(GladdError, TimeoutError):
    """``Client.wait`` (or ``gladd tasks wait``) gave up before the task finished: the task
    goes on regardless. ``task`` is the task as last read (its state, its progress)."""

    def __init__(self, task: Any, timeout: float) -> None:
        # task: a gladd.store.Task (typed loosely: this module imports nothing of gladd's)
        progress = ""
        if task.progress is not None:
            progress = f", {task.progress.fraction:.0%} done"
        super().__init__(
            f"task {task.id} ({task.kind}) is still {task.state.value}{progress} after "
            f"waiting {timeout:g}s; it goes on: wait again, or `gladd tasks "
            f"show {task.id}`"
        )
        self.task = task
        self.timeout = timeout


class PluginError(GladdError):
    """An integration plugin, or a call it made to an outside service, failed."""


class PluginLoadError(PluginError):
    """A plugin could not be imported or validated; ``source`` says where it came from."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message}")
