"""The reload pipeline against real files, with no watcher: verdicts, generations, coalescing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from loguru import logger

from gladd.errors import PolicyError, Problem
from gladd.observe.reloads import Reloads
from gladd.policies import parse_policies
from gladd.reload.diff import Change
from gladd.reload.reloader import Reloader, ReloadResult, Served

pytestmark = pytest.mark.anyio

SHIPPED = (Path(__file__).resolve().parents[2] / "policies.toml").read_bytes()


def edit(old: str, new: str, base: bytes = SHIPPED) -> bytes:
    assert base.count(old.encode()) == 1, f"{old!r} is not unique"
    return base.replace(old.encode(), new.encode())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def position(data: bytes, text: str) -> str:
    """``line:col`` of the value in ``text`` (``key = value``) as the file has it."""
    for number, line in enumerate(data.decode().splitlines(), start=1):
        if line.startswith(text):
            return f"{number}:{line.index('=') + 3}"
    raise AssertionError(f"{text!r} not in the file")


@dataclass
class Harness:
    """A reloader on ``path`` whose prepare/commit, listener and start hooks record what
    they see; ``refusal`` set, preparation refuses the new policies with it."""

    path: Path
    last_good: Path
    served: Served = field(init=False)
    applied: list[tuple[Served, list[Change]]] = field(default_factory=list)
    reported: list[ReloadResult] = field(default_factory=list)
    starts: int = 0
    settle: float = 0.0  # the coalescing test feeds each read itself
    read: Callable[[], Awaitable[bytes]] | None = None
    refusal: PolicyError | None = None
    reads: tuple[anyio.abc.ObjectSendStream[int], anyio.abc.ObjectReceiveStream[int]] = field(
        default_factory=lambda: anyio.create_memory_object_stream[int](100)
    )
    reloader: Reloader = field(init=False)

    def __post_init__(self) -> None:
        self.served = Served(generation=1, loaded=parse_policies(SHIPPED, source=str(self.path)))
        self.reloader = Reloader(
            path=self.path,
            served=self._current,
            prepare=self._prepare,
            last_good=self.last_good,
            listeners=[self.reported.append],
            on_start=self._started,
            settle=self.settle,
            read=self.read,
        )

    def _current(self) -> Served:
        # Called once per reload, just before the file is read.
        self.reads[0].send_nowait(self.served.generation)
        return self.served

    def _prepare(self, served: Served, changes: list[Change]) -> Callable[[], None]:
        if self.refusal is not None:
            raise self.refusal

        def commit() -> None:
            self.served = served
            self.applied.append((served, changes))

        return commit

    def _started(self) -> None:
        self.starts += 1

    def write(self, data: bytes) -> None:
        self.path.write_bytes(data)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Reloader]:
        async with anyio.create_task_group() as tg:
            await tg.start(self.reloader.run)
            yield self.reloader
            tg.cancel_scope.cancel()


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    h = Harness(path=tmp_path / "policies.toml", last_good=tmp_path / "state" / "last-good.toml")
    h.write(SHIPPED)
    return h


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Messages gladd logs during the test."""
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="DEBUG")
    yield messages
    logger.remove(sink)


def reload_lines(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("reload (")]


# -- verdicts -------------------------------------------------------------------------------


async def test_a_valid_change_is_applied_as_the_next_generation(
    harness: Harness, logged: list[str]
) -> None:
    new = edit("concurrency = 10", "concurrency = 3")
    harness.write(new)
    async with harness.running() as reloader:
        result = await reloader.reload("api")

    assert result.outcome == "applied"
    assert result.trigger == "api"
    assert result.generation == 2
    assert result.sha256 == sha(new)
    assert [c.render() for c in result.changes] == ["executor.concurrency 10 → 3"]
    assert result.errors == ()
    assert result.summary() == "applied generation 2: executor.concurrency 10 → 3"
    ((served, changes),) = harness.applied
    assert served.generation == 2
    assert served.loaded.policies.executor.concurrency == 3
    assert served.loaded.sha256 == sha(new)
    assert changes == list(result.changes)
    assert harness.starts == 1
    assert harness.reported == [result]
    assert reloader.last_rejection is None
    (line,) = reload_lines(logged)
    assert line.startswith(f"reload (api) applied: generation 2, sha256 {sha(new)[:12]}, ")
    assert line.endswith(" ms: executor.concurrency 10 → 3")


async def test_the_same_content_as_served_is_unchanged_and_costs_nothing(
    harness: Harness, logged: list[str]
) -> None:
    async with harness.running() as reloader:
        result = await reloader.reload("api")

    assert result.outcome == "unchanged"
    assert result.generation == 1
    assert result.sha256 == sha(SHIPPED)
    assert result.summary() == "unchanged; serving generation 1"
    assert harness.applied == []
    assert harness.starts == 0  # no RELOADING=1 for a reload that does nothing
    assert not harness.last_good.exists()
    assert reload_lines(logged) == []


async def test_invalid_content_is_rejected_and_changes_nothing(
    harness: Harness, logged: list[str]
) -> None:
    broken = edit("concurrency = 10", "concurrency = 0")
    harness.write(broken)
    async with harness.running() as reloader:
        result = await reloader.reload("signal")

    assert result.outcome == "rejected"
    assert result.generation == 1
    assert result.sha256 == sha(broken)
    assert result.errors == (
        f"{harness.path}:{position(broken, 'concurrency')}: "
        "executor.concurrency: must be ≥ 1 (got 0)",
    )
    assert result.summary() == "rejected; still serving generation 1"
    assert harness.applied == []
    assert harness.served.generation == 1
    assert not harness.last_good.exists()
    assert reloader.last_rejection == result
    (line,) = reload_lines(logged)
    assert "reload (signal) rejected: generation 1" in line
    assert line.endswith("nothing changed, 1 problem:")
    assert f"reload rejected, 1 of 1: {result.errors[0]}" in logged


async def test_the_generation_moves_only_when_a_reload_applies(harness: Harness) -> None:
    steps = [
        (edit("concurrency = 10", "concurrency = 3"), "applied", 2),
        (edit("concurrency = 10", "concurrency = 0"), "rejected", 2),
        (edit("concurrency = 10", "concurrency = 3"), "unchanged", 2),
        (b"[executor]\nconcurrency = oops\n", "rejected", 2),
        (edit("attempts = 4", "attempts = 5"), "applied", 3),
        (edit("attempts = 4", "attempts = 5"), "unchanged", 3),
    ]
    async with harness.running() as reloader:
        for data, outcome, generation in steps:
            harness.write(data)
            result = await reloader.reload("api")
            assert (result.outcome, result.generation) == (outcome, generation), data
    assert [served.generation for served, _ in harness.applied] == [2, 3]


async def test_a_syntax_error_is_located(harness: Harness) -> None:
    harness.write(b"schema_version = 1\n[executor]\nconcurrency = = 3\n")
    async with harness.running() as reloader:
        result = await reloader.reload("api")
    assert result.outcome == "rejected"
    (error,) = result.errors
    assert error.startswith(f"{harness.path}:3:")


@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        ("pool_max_size = 10", "pool_max_size = 20", "database.pool_max_size 10 → 20"),
        ("pool_min_size = 1", "pool_min_size = 2", "database.pool_min_size 1 → 2"),
    ],
)
async def test_a_restart_only_change_is_rejected_naming_the_field(
    harness: Harness, old: str, new: str, shown: str
) -> None:
    harness.write(edit(old, new))
    async with harness.running() as reloader:
        result = await reloader.reload("api")

    assert result.outcome == "rejected"
    assert result.generation == 1
    (error,) = result.errors
    assert error.startswith(f"{harness.path}: {shown}: ")
    assert "restart" in error
    assert harness.applied == []
    assert reloader.last_rejection == result


async def test_a_restart_only_change_holds_back_the_hot_changes_beside_it(
    harness: Harness,
) -> None:
    # No half-applied reloads: the hot concurrency change waits with the restart-only one.
    harness.write(
        edit(
            "pool_max_size = 10", "pool_max_size = 20", edit("concurrency = 10", "concurrency = 3")
        )
    )
    async with harness.running() as reloader:
        result = await reloader.reload("api")
    assert result.outcome == "rejected"
    assert len(result.errors) == 1
    assert "database.pool_max_size" in result.errors[0]
    assert harness.applied == []
    assert harness.served.loaded.policies.executor.concurrency == 10


# -- recovering from a rejection ------------------------------------------------------------


async def test_a_fix_after_a_rejection_is_applied_and_clears_the_rejection(
    harness: Harness,
) -> None:
    async with harness.running() as reloader:
        harness.write(edit("concurrency = 10", "concurrency = 0"))
        assert (await reloader.reload("file")).outcome == "rejected"
        assert reloader.last_rejection is not None

        harness.write(edit("concurrency = 10", "concurrency = 4"))
        fixed = await reloader.reload("file")

    assert fixed.outcome == "applied"
    assert fixed.generation == 2
    assert reloader.last_rejection is None


@pytest.mark.parametrize("trigger", ["file", "api"])
async def test_reverting_to_the_served_content_is_unchanged_and_clears_the_rejection(
    harness: Harness, trigger: str
) -> None:
    async with harness.running() as reloader:
        harness.write(edit("concurrency = 10", "concurrency = 0"))
        assert (await reloader.reload(trigger)).outcome == "rejected"

        harness.write(SHIPPED)
        reverted = await reloader.reload(trigger)

    assert reverted.outcome == "unchanged"
    assert reverted.generation == 1
    assert reloader.last_rejection is None
    assert harness.applied == []


async def test_file_events_on_the_same_broken_content_stay_quiet_but_keep_the_warning(
    harness: Harness, logged: list[str]
) -> None:
    broken = edit("concurrency = 10", "concurrency = 0")
    harness.write(broken)
    async with harness.running() as reloader:
        rejected = await reloader.reload("file")
        again = [await reloader.reload(t) for t in ("file", "poll", "file")]
        asked = await reloader.reload("api")

    assert [r.outcome for r in again] == ["unchanged"] * 3
    assert all(r.generation == 1 for r in again)
    assert reloader.last_rejection == asked
    # An operator who asks gets the errors again; the watcher does not repeat them.
    assert asked.outcome == "rejected"
    assert asked.errors == rejected.errors
    assert [line.split(":")[0] for line in reload_lines(logged)] == [
        "reload (file) rejected",
        "reload (api) rejected",
    ]
    assert harness.starts == 2


# -- coalescing -----------------------------------------------------------------------------


async def test_requests_made_together_share_one_reload(harness: Harness) -> None:
    harness.write(edit("concurrency = 10", "concurrency = 3"))
    async with harness.running() as reloader:
        for _ in range(50):
            reloader.request("file")
        reloader.request("signal")
        result = await reloader.reload("poll")

    assert result.outcome == "applied"
    assert result.trigger == "signal"  # an explicit trigger names the reload
    assert harness.reported == [result]
    assert len(harness.applied) == 1


async def test_requests_during_a_reload_coalesce_into_one_read_made_after_they_asked(
    tmp_path: Path,
) -> None:
    # Each read blocks until the test feeds it, so the test knows exactly which requests
    # arrive while a reload is in progress.
    fed, feeding = anyio.create_memory_object_stream[bytes](1)

    async def read() -> bytes:
        return await feeding.receive()

    harness = Harness(
        path=tmp_path / "policies.toml", last_good=tmp_path / "last-good.toml", read=read
    )
    first = edit("concurrency = 10", "concurrency = 3")
    second = edit("concurrency = 10", "concurrency = 7")
    verdicts: dict[str, ReloadResult] = {}

    async def ask(name: str, trigger: str) -> None:
        verdicts[name] = await harness.reloader.reload(trigger)

    async def feed(data: bytes) -> None:
        await fed.send(data)

    _, reads = harness.reads
    async with harness.running():
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "before", "api")
            assert await reads.receive() == 1  # the first reload is reading now
            for i in range(5):
                tg.start_soon(ask, f"during{i}", "api")
            for _ in range(20):
                harness.reloader.request("file")
            await anyio.wait_all_tasks_blocked()
            await feed(first)

            assert await reads.receive() == 2  # the second reload is reading now
            assert set(verdicts) <= {"before"}  # nobody who asked late got the early read
            await feed(second)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.WouldBlock):
            reads.receive_nowait()  # no third reload

    assert verdicts["before"].sha256 == sha(first)
    assert verdicts["before"].generation == 2
    late = {verdicts[f"during{i}"] for i in range(5)}
    assert len(late) == 1
    (result,) = late
    assert (result.outcome, result.generation, result.sha256) == ("applied", 3, sha(second))
    assert result.trigger == "api"
    assert [served.generation for served, _ in harness.applied] == [2, 3]


async def reload_reading(harness: Harness, reads: list[bytes]) -> ReloadResult:
    """One reload by signal whose reads of the file return ``reads`` in turn (settling)."""

    async def read() -> bytes:
        return reads.pop(0)

    reloader = Reloader(
        path=harness.path,
        served=harness._current,
        prepare=harness._prepare,
        settle=0.001,
        read=read,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(reloader.run)
        result = await reloader.reload("signal")
        tg.cancel_scope.cancel()
    return result


async def test_content_caught_mid_write_is_read_again_until_it_holds_still(
    harness: Harness,
) -> None:
    # `cat new > policies.toml` truncates first: a reload asked for at that moment reads an
    # empty file, which is valid (all defaults). It must wait for the whole file instead.
    whole = edit("concurrency = 10", "concurrency = 3")
    reads = [b"", whole, whole]
    result = await reload_reading(harness, reads)

    assert (result.outcome, result.generation, result.sha256) == ("applied", 2, sha(whole))
    assert [c.render() for c in result.changes] == ["executor.concurrency 10 → 3"]
    assert len(harness.applied) == 1
    assert reads == [], "read again until two reads agreed"


async def test_content_put_back_while_settling_is_unchanged(harness: Harness) -> None:
    reads = [edit("concurrency = 10", "concurrency = 3"), SHIPPED, SHIPPED]
    result = await reload_reading(harness, reads)

    assert (result.outcome, result.generation, result.sha256) == ("unchanged", 1, sha(SHIPPED))
    assert harness.applied == []
    assert reads == []


# -- the last good copy ---------------------------------------------------------------------


async def test_the_last_good_copy_is_replaced_atomically_with_the_applied_bytes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.last_good.parent.mkdir()
    harness.last_good.write_bytes(SHIPPED)
    new = edit("concurrency = 10", "concurrency = 3")
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def replace(src: Path, dst: Path) -> None:
        # At the moment of the swap the old copy is whole and the new one is complete.
        assert Path(dst).read_bytes() == SHIPPED
        assert Path(src).read_bytes() == new
        assert Path(src).parent == Path(dst).parent  # same file system: rename is atomic
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("gladd.reload.reloader.os.replace", replace)
    harness.write(new)
    async with harness.running() as reloader:
        assert (await reloader.reload("api")).outcome == "applied"
        harness.write(edit("concurrency = 10", "concurrency = 0"))
        assert (await reloader.reload("api")).outcome == "rejected"

    assert [dst for _, dst in replaced] == [harness.last_good]
    assert harness.last_good.read_bytes() == new  # the rejection did not touch it
    assert sorted(p.name for p in harness.last_good.parent.iterdir()) == [harness.last_good.name]


async def test_the_last_good_directory_is_created_when_missing(harness: Harness) -> None:
    new = edit("attempts = 4", "attempts = 5")
    harness.write(new)
    async with harness.running() as reloader:
        assert (await reloader.reload("api")).outcome == "applied"
    assert harness.last_good.read_bytes() == new


async def test_a_last_good_copy_that_cannot_be_written_warns_but_the_reload_applies(
    tmp_path: Path, logged: list[str]
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    harness = Harness(path=tmp_path / "policies.toml", last_good=blocker / "last-good.toml")
    harness.write(edit("attempts = 4", "attempts = 5"))
    async with harness.running() as reloader:
        result = await reloader.reload("api")
    assert result.outcome == "applied"
    assert any(m.startswith("could not keep the last good policies at") for m in logged)


# -- an unreadable file ---------------------------------------------------------------------


async def test_a_missing_file_asked_for_is_rejected_as_not_found(harness: Harness) -> None:
    harness.path.unlink()
    async with harness.running() as reloader:
        result = await reloader.reload("api")
    assert result.outcome == "rejected"
    assert result.errors == (f"{harness.path}: file not found",)
    assert result.sha256 == ""
    assert result.generation == 1
    assert reloader.last_rejection == result
    assert harness.applied == []


async def test_a_missing_file_seen_by_the_watcher_is_waited_for_quietly(
    harness: Harness, logged: list[str]
) -> None:
    # Between the delete and the re-create of a save, or a symlink swap.
    harness.path.unlink()
    async with harness.running() as reloader:
        gone = [await reloader.reload(t) for t in ("file", "poll")]
        assert reloader.last_rejection is None

        recreated = edit("concurrency = 10", "concurrency = 3")
        harness.write(recreated)
        back = await reloader.reload("file")

    assert [r.outcome for r in gone] == ["unchanged", "unchanged"]
    assert all(r.generation == 1 and r.errors == () for r in gone)
    assert harness.starts == 1
    assert (back.outcome, back.generation) == ("applied", 2)
    assert [line.split(":")[0] for line in reload_lines(logged)] == ["reload (file) applied"]


async def test_a_directory_in_place_of_the_file_is_rejected_with_the_reason(
    harness: Harness,
) -> None:
    harness.path.unlink()
    harness.path.mkdir()
    async with harness.running() as reloader:
        result = await reloader.reload("api")
    assert result.outcome == "rejected"
    assert result.errors == (
        f"{harness.path}: is a directory, not a regular file; put the policies file itself here",
    )


async def test_a_fifo_in_place_of_the_file_is_refused_at_once_and_a_real_file_applies(
    harness: Harness, logged: list[str]
) -> None:
    harness.path.unlink()
    os.mkfifo(harness.path)  # nobody will ever write to it
    async with harness.running() as reloader:
        with anyio.fail_after(5):
            result = await reloader.reload("api")
            watched = [await reloader.reload(t) for t in ("poll", "file", "poll")]
        assert reloader.last_rejection == result  # health keeps warning

        harness.path.unlink()
        harness.write(edit("concurrency = 10", "concurrency = 3"))
        with anyio.fail_after(5):
            fixed = await reloader.reload("poll")

    assert (result.outcome, result.generation, result.sha256) == ("rejected", 1, "")
    assert result.errors == (
        f"{harness.path}: is a FIFO (named pipe), not a regular file; "
        "put the policies file itself here",
    )
    # The watcher's looks at the same FIFO neither repeat the error nor clear it.
    assert [(r.outcome, r.is_check) for r in watched] == [("unchanged", True)] * 3
    assert (fixed.outcome, fixed.generation) == ("applied", 2)
    assert reloader.last_rejection is None
    assert [line.split(":")[0] for line in reload_lines(logged)] == [
        "reload (api) rejected",
        "reload (poll) applied",
    ]


async def test_a_file_over_the_size_limit_is_refused(harness: Harness) -> None:
    with harness.path.open("wb") as f:
        f.truncate(60 * 1024 * 1024)
    async with harness.running() as reloader:
        result = await reloader.reload("signal")
    assert result.outcome == "rejected"
    assert result.errors == (
        f"{harness.path}: is 60 MiB, over the 4 MiB limit for a policies file; "
        "is this the right file?",
    )
    assert harness.applied == []


async def test_a_refused_preparation_rejects_the_reload_and_changes_nothing(
    harness: Harness, logged: list[str]
) -> None:
    harness.last_good.parent.mkdir()
    harness.last_good.write_bytes(SHIPPED)
    harness.refusal = PolicyError(
        str(harness.path), [Problem(path="", message="the task store could not take these")]
    )
    harness.write(edit("concurrency = 10", "concurrency = 3"))
    async with harness.running() as reloader:
        result = await reloader.reload("api")

    assert (result.outcome, result.generation) == ("rejected", 1)
    assert result.errors == (f"{harness.path}: the task store could not take these",)
    assert harness.applied == []
    assert harness.served.generation == 1
    assert harness.last_good.read_bytes() == SHIPPED  # the last good copy is not touched
    assert reloader.last_rejection == result


async def test_each_problem_of_a_rejection_is_its_own_error_record(harness: Harness) -> None:
    records: list[tuple[str, str]] = []
    sink = logger.add(lambda m: records.append((m.record["level"].name, m.record["message"])))
    broken = edit("concurrency = 10", "concurrency = 0")
    broken = edit("attempts = 4", "attempts = 0", broken)
    harness.write(broken)
    try:
        async with harness.running() as reloader:
            result = await reloader.reload("api")
    finally:
        logger.remove(sink)

    assert len(result.errors) == 2
    logged = [(level, m) for level, m in records if "reload" in m]
    assert logged[0][0] == "ERROR"
    assert logged[0][1].endswith("nothing changed, 2 problems:")
    assert logged[1:] == [
        ("ERROR", f"reload rejected, {n} of 2: {error}")
        for n, error in enumerate(result.errors, start=1)
    ]
    assert all("\n" not in m for _, m in records)


@pytest.mark.parametrize("trigger", ["file", "poll", "api"])
async def test_putting_the_served_file_back_resolves_the_rejection_for_every_surface(
    harness: Harness, trigger: str, logged: list[str]
) -> None:
    reloads = Reloads()
    harness.reloader.listeners.append(reloads.heard)
    async with harness.running() as reloader:
        harness.write(edit("concurrency = 10", "concurrency = 0"))
        assert (await reloader.reload(trigger)).outcome == "rejected"
        assert reloads.last is not None
        assert reloads.last.outcome == "rejected"

        harness.write(SHIPPED)
        back = await reloader.reload(trigger)
        again = await reloader.reload(trigger)

    assert (back.outcome, back.resolved, back.is_check) == ("unchanged", True, False)
    assert "the last rejection no longer stands" in back.summary()
    assert reloader.last_rejection is None
    assert reloads.last is not None
    assert (reloads.last.outcome, reloads.last.trigger) == ("unchanged", trigger)
    assert "no longer stands" in reloads.last.detail
    assert not again.resolved  # said once
    assert any("the rejection is over" in line for line in reload_lines(logged))


async def test_the_watchers_looks_that_find_nothing_new_are_checks_not_reloads(
    harness: Harness,
) -> None:
    reloads = Reloads()
    harness.reloader.listeners.append(reloads.heard)
    async with harness.running() as reloader:
        for trigger in ("poll", "poll", "file", "api", "signal"):
            await reloader.reload(trigger)

    assert reloads.checks == {"poll": 2, "file": 1}
    # An operator's explicit reload is one, whatever it finds.
    assert reloads.counts == {("api", "unchanged"): 1, ("signal", "unchanged"): 1}
