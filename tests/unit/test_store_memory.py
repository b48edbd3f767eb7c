"""The in-memory reference store's own parts, and choosing a store by URL.

The behaviour every store shares is in tests/integration/test_store_contract.py.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from gladd.errors import ConfigError, TaskRejected
from gladd.policies.model import DatabasePolicy, Policies
from gladd.resilience.classify import DEFAULT_CLASSIFIER, error_class
from gladd.store import NewTask, Task, TaskState
from gladd.store.configure import configured_store, prepare_retune
from gladd.store.factory import store_from_url
from gladd.store.memory import MemoryStore
from gladd.store.registry import BACKENDS
from gladd.store.rules import Wakeup, check_new_task, rescue_verdict, utc
from gladd.store.sqlite.store import SQLiteStore
from gladd.store.urls import mask_url

BASE = datetime(2026, 1, 1, tzinfo=UTC)


# -- wake-ups -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_wakeup_is_reusable_and_sticky() -> None:
    wakeup = Wakeup()
    assert await wakeup.wait(0.01) is False
    wakeup.notify()
    wakeup.notify()
    assert await wakeup.wait(10) is True  # remembered, consumed once
    assert await wakeup.wait(0.01) is False
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await wakeup.wait(10))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(waiter)
            await anyio.sleep(0.01)
            wakeup.notify()
    assert results == [True, True, True]


@pytest.mark.anyio
async def test_memory_store_reports_itself() -> None:
    store = MemoryStore()
    await store.open()
    await store.enqueue(NewTask(kind="k"), now=BASE)
    assert repr(store) == "MemoryStore(1 tasks)"
    assert store.url == "memory://"
    status = await store.migration_status()
    assert (status.current, status.latest, status.applied) == (0, 0, ())
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.claim(worker="w", limit=1, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="limit"):
        await store.claim(worker="w", limit=-1, now=BASE)
    await store.close()


# -- shared rules ---------------------------------------------------------------------------


def test_check_new_task_lists_every_problem_at_once() -> None:
    bad = NewTask(kind="mail", max_attempts=0, timeout=-1.0, payload=object())
    with pytest.raises(TaskRejected) as caught:
        check_new_task(bad, now=BASE)
    message = str(caught.value)
    assert message.startswith("task of kind 'mail' refused: ")
    for part in ("max_attempts must be at least 1, got 0", "timeout", "payload"):
        assert part in message


def test_check_new_task_defaults_run_at_to_now_and_normalises_to_utc() -> None:
    payload, run_at = check_new_task(NewTask(kind="k", payload={"a": [1]}), now=BASE)
    assert (payload, run_at) == ('{"a":[1]}', BASE)
    later = datetime(2026, 1, 1, 3, tzinfo=UTC).astimezone(UTC) + timedelta(hours=1)
    _, run_at = check_new_task(NewTask(kind="k", run_at=later), now=BASE)
    assert run_at == later
    assert utc(later).tzinfo is UTC


def _running(**fields: object) -> Task:
    values: dict[str, object] = {
        "id": 1,
        "kind": "k",
        "payload": {},
        "state": TaskState.RUNNING,
        "priority": 0,
        "run_at": BASE,
        "attempt": 1,
        "max_attempts": 5,
        "timeout": None,
        "unique_key": None,
        "owner": "w",
        "token": 1,
        "rescues": 0,
        "deadline": None,
        "cancel_requested": False,
        "result": None,
        "errors": (),
        "created_at": BASE,
        "updated_at": BASE,
        "finished_at": None,
        **fields,
    }
    return Task(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "live", "verdict"),
    [
        ({}, False, TaskState.PENDING),
        ({"rescues": 2}, False, TaskState.PENDING),
        ({"rescues": 3}, False, TaskState.DEAD),
        # A crashed worker does not spend the task's last attempt; a hung attempt does.
        ({"attempt": 5}, False, TaskState.PENDING),
        ({"attempt": 5}, True, TaskState.DEAD),
        ({"cancel_requested": True, "rescues": 3}, False, TaskState.CANCELLED),
    ],
)
def test_rescue_verdict(fields: dict[str, object], live: bool, verdict: TaskState) -> None:
    assert rescue_verdict(_running(**fields), max_rescues=3, live=live) is verdict


# -- choosing a store by URL ----------------------------------------------------------------


def test_store_from_url_picks_the_store() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)
    relative = store_from_url("sqlite:///state/gladd.db")
    assert isinstance(relative, SQLiteStore)
    assert (relative.path, relative.url) == ("state/gladd.db", "sqlite:///state/gladd.db")
    absolute = store_from_url("sqlite:////var/lib/gladd/gladd.db", busy_timeout=1.0)
    assert isinstance(absolute, SQLiteStore)
    assert (absolute.path, absolute.busy_timeout) == ("/var/lib/gladd/gladd.db", 1.0)


def test_store_from_url_builds_postgres_lazily() -> None:
    store = store_from_url("postgresql://gladd:s3cret@db.example/gladd", query_timeout=2.0)
    assert type(store).__name__ == "PostgresStore"
    assert "s3cret" not in store.url
    assert store_from_url("postgres://gladd@db/gladd").url == "postgres://gladd@db/gladd"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://root:pw@db/app",
            "store URL 'mysql://root:***@db/app' has an unsupported scheme 'mysql': "
            "use sqlite:///PATH, postgresql://USER@HOST/DB or memory://",
        ),
        ("gladd.db", "store URL 'gladd.db' has no scheme"),
        ("sqlite://gladd.db", "a SQLite URL is sqlite:/// followed by the file's path"),
        ("sqlite:///", "names no database file"),
        ("memory://somewhere", "memory:// takes no host"),
    ],
)
def test_store_from_url_refuses_what_it_cannot_serve(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        store_from_url(url)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u:p%40ss@h:5432/db?sslmode=require",
            "postgresql://u:***@h:5432/db?sslmode=require",
        ),
        ("postgresql://u@h/db?password=pw&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////var/lib/gladd/gladd.db", "sqlite:////var/lib/gladd/gladd.db"),
        ("memory://", "memory://"),
    ],
)
def test_mask_url_hides_the_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


# -- what the registry tells the rest of gladd ----------------------------------------------


def test_choosing_a_sqlite_store_never_loads_the_postgresql_driver() -> None:
    script = (
        "import sys\n"
        "from gladd.store.factory import store_from_url\n"
        "store_from_url('sqlite:///x.db'); store_from_url('memory://')\n"
        "assert 'asyncpg' not in sys.modules, 'asyncpg was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_retuning_a_store_without_live_fields_needs_no_other_store_s_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What an install without the PostgreSQL driver does on every reload of a SQLite store.
    monkeypatch.setitem(sys.modules, "gladd.store.postgres.store", None)
    for store in (MemoryStore(), SQLiteStore(":memory:")):
        prepare_retune(store, Policies())()


def test_postgres_takes_the_query_timeout_live_and_refuses_a_bad_one_before_the_commit() -> None:
    store = configured_store("postgresql://gladd@db/gladd", Policies())
    assert store.query_timeout == 5.0  # type: ignore[attr-defined]
    commit = store.prepare_retune(DatabasePolicy(query_timeout="2s"))
    assert store.query_timeout == 5.0  # type: ignore[attr-defined]  # nothing before the commit
    commit()
    assert store.query_timeout == 2.0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"database\.query_timeout must be longer than 0s"):
        store.prepare_retune(DatabasePolicy.model_construct(query_timeout=0.0))


def test_only_a_sqlite_file_is_served_by_one_daemon_at_a_time() -> None:
    single = {
        backend.name: store_from_url(url).capabilities.single_process
        for backend, url in zip(
            BACKENDS, ("sqlite:///x.db", "postgresql://gladd@db/gladd", "memory://"), strict=True
        )
    }
    assert single == {"sqlite": True, "postgresql": False, "memory": False}


def test_every_store_s_transient_driver_errors_are_real_classes_the_classifier_retries() -> None:
    registered = [(b, name, c) for b in BACKENDS for name, c in b.transient.items()]
    assert registered, "the PostgreSQL driver's connection errors are registered"
    for backend, name, retry_class in registered:
        module, _, attr = name.rpartition(".")
        error = getattr(importlib.import_module(module), attr)(f"{backend.name} went away")
        assert error_class(error) == retry_class, name
        assert DEFAULT_CLASSIFIER.transient(error), name
