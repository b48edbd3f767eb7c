"""The admin address's safety around the console, on a real runtime and store: the login
cookie, cross-site refusal, read-only mode, masked payloads and audited actions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from loguru import logger

from gladd.admin.app import create_app
from gladd.admin.cross_site import cross_site_problem
from gladd.admin.read_only import is_operator_action
from gladd.admin.session import COOKIE, cookie_value
from gladd.console.app import console_app
from gladd.resilience import FakeClock
from gladd.runtime import Runtime
from gladd.settings import Settings
from gladd.store.memory import MemoryStore
from tests.unit.test_admin_breakers import POLICIES  # a breaker guarding service billing

pytestmark = pytest.mark.anyio

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    store = MemoryStore()
    runtime = Runtime(
        Settings(state_dir=tmp_path, plugin_paths=(), node_name="n1"),
        POLICIES,
        store=store,
        clock=FakeClock(),
    )
    await store.open()
    runtime.store_health.open()
    yield runtime
    await store.close()


def admin(
    runtime: Runtime,
    *,
    token: str | None = TOKEN,
    read_only: bool = False,
    own_names: list[str] | None = None,
) -> httpx.AsyncClient:
    app = create_app(
        runtime.board,
        tasks=runtime.tasks,
        resilience=runtime.resilience,
        now=runtime.wall_now,
        persist_breaker=runtime.persist_breaker,
        token=token,
        console=console_app(runtime.console_deps(token=token, read_only=read_only)),
        read_only=read_only,
        own_names=own_names,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin")


def logged_in(token: str = TOKEN) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={cookie_value(token)}"}


@pytest.fixture
def audit() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    yield lines
    logger.remove(sink)


async def cancelled_task(runtime: Runtime, payload: object = None) -> int:
    made = await runtime.tasks.enqueue("gladd.noop", payload, delay=3600)
    await runtime.tasks.cancel(made.id)
    return made.id


async def test_the_console_asks_once_for_the_token_and_keeps_an_hmac_of_it(
    runtime: Runtime,
) -> None:
    async with admin(runtime) as client:
        away = await client.get("/ui/tasks?state=dead")
        assert away.status_code == 303
        assert away.headers["location"] == "/ui/login?next=/ui/tasks%3Fstate%3Ddead"
        form = await client.get("/ui/login?next=/ui/tasks%3Fstate%3Ddead")
        assert form.status_code == 200
        assert 'name="next" value="/ui/tasks?state=dead"' in form.text

        wrong = await client.post("/ui/login", data={"token": "guess", "next": "/ui/dead"})
        assert wrong.status_code == 401
        assert "Wrong token" in wrong.text
        assert "set-cookie" not in wrong.headers

        right = await client.post("/ui/login", data={"token": TOKEN, "next": "/ui/dead"})
        assert right.status_code == 303
        assert right.headers["location"] == "/ui/dead"
        cookie = right.headers["set-cookie"]
        assert cookie == (f"{COOKIE}={cookie_value(TOKEN)}; Path=/ui; HttpOnly; SameSite=Strict")
        assert TOKEN not in cookie

        page = await client.get("/ui/dead", headers=logged_in())
        assert page.status_code == 200
        assert "Dead tasks" in page.text
        assert "Log out" in page.text
        # The cookie is the console's: the API still wants the bearer token.
        assert (await client.get("/tasks", headers=logged_in())).status_code == 401
        assert (await client.get("/tasks", headers=BEARER)).status_code == 200
        assert (await client.get("/ui/kinds", headers=BEARER)).status_code == 200
        missing = await client.get("/ui/nope", headers=BEARER)
        assert missing.status_code == 404
        assert "the console has no page /ui/nope" in missing.text
        assert (await client.get("/ui/tasks/12345", headers=BEARER)).status_code == 404

        out = await client.post("/ui/logout", headers=logged_in())
        assert out.status_code == 303
        assert "Max-Age=0" in out.headers["set-cookie"]
        # A login page elsewhere than the console is not where a login sends anyone.
        odd = await client.post("/ui/login", data={"token": TOKEN, "next": "//evil.example/"})
        assert odd.headers["location"] == "/ui/"

    # A changed token invalidates every cookie of the old one.
    async with admin(runtime, token="rotated") as client:
        stale = await client.get("/ui/", headers=logged_in())
        assert stale.status_code == 303
        assert stale.headers["location"].startswith("/ui/login")


async def test_without_a_token_there_is_no_login(runtime: Runtime) -> None:
    async with admin(runtime, token=None) as client:
        assert (await client.get("/ui/")).status_code == 200
        login = await client.get("/ui/login")
        assert (login.status_code, login.headers["location"]) == (303, "/ui/")


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, True),
        ({"Sec-Fetch-Site": "same-site"}, True),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}, False),
        ({"Sec-Fetch-Site": "none"}, False),
        ({"Origin": "http://evil.example"}, True),
        ({"Origin": "null"}, True),
        ({"Origin": "http://admin:8000"}, True),
        ({"Origin": "http://admin"}, False),
        ({}, False),
    ],
)
def test_what_counts_as_cross_site(headers: dict[str, str], refused: bool) -> None:
    raw = {k.lower().encode(): v.encode() for k, v in headers.items()}
    raw[b"host"] = b"admin"
    assert (cross_site_problem("POST", raw) is not None) is refused
    assert cross_site_problem("GET", raw) is None


async def test_a_cross_site_post_is_refused_on_the_api_and_in_the_console(
    runtime: Runtime,
) -> None:
    task_id = await cancelled_task(runtime)
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    async with admin(runtime) as client:
        api = await client.post(f"/tasks/{task_id}/retry", headers=BEARER | evil)
        assert api.status_code == 403
        assert api.json() == {
            "error": "cross-site request refused: Sec-Fetch-Site is 'cross-site', not same-origin"
        }
        page = await client.post(f"/ui/tasks/{task_id}/retry", headers=logged_in() | evil)
        assert page.status_code == 403
        assert page.headers["content-type"].startswith("text/html")
        assert "cross-site request refused" in page.text
        # The login form too: no logging a browser in from elsewhere.
        login = await client.post("/ui/login", data={"token": TOKEN}, headers=evil)
        assert login.status_code == 403
        assert (await runtime.tasks.get(task_id)).state.value == "cancelled"

        same = {"Origin": "http://admin", "Sec-Fetch-Site": "same-origin"}
        done = await client.post(f"/ui/tasks/{task_id}/retry", headers=logged_in() | same)
        assert done.status_code == 303
        assert (await runtime.tasks.get(task_id)).state.value == "pending"


def test_read_only_refuses_every_change_but_enqueue_and_the_login() -> None:
    assert not is_operator_action("POST", "/tasks")
    assert not is_operator_action("GET", "/tasks/4/wait")
    assert not is_operator_action("POST", "/ui/login")
    for method, path in [
        ("POST", "/tasks/4/retry"),
        ("POST", "/tasks/4/cancel"),
        ("POST", "/tasks/bulk/retry"),
        ("POST", "/pauses"),
        ("DELETE", "/pauses/kind:x"),
        ("POST", "/breakers/api/isolate"),
        ("POST", "/schedules/nightly/run"),
        ("POST", "/reload"),
        ("POST", "/ui/tasks/4/retry"),
        ("POST", "/ui/kinds/x/pause"),
    ]:
        assert is_operator_action(method, path), (method, path)


async def test_read_only_mode_hides_and_refuses_actions_and_lets_producers_in(
    runtime: Runtime,
) -> None:
    task_id = await cancelled_task(runtime)
    async with admin(runtime, read_only=True) as client:
        made = await client.post("/tasks", json={"kind": "gladd.noop"}, headers=BEARER)
        assert made.status_code == 201
        refused = await client.post(f"/tasks/{task_id}/retry", headers=BEARER)
        assert refused.status_code == 403
        assert "read-only (GLADD_ADMIN_READ_ONLY is set)" in refused.json()["error"]
        assert "unset GLADD_ADMIN_READ_ONLY and restart gladd" in refused.json()["error"]
        for path in ("/breakers/billing/isolate", "/reload", "/schedules/x/run"):
            assert (await client.post(path, headers=BEARER)).status_code == 403, path
        page = await client.post(f"/ui/tasks/{task_id}/retry", headers=logged_in())
        assert page.status_code == 403
        assert "read-only" in page.text
        assert (await runtime.tasks.get(task_id)).state.value == "cancelled"

        for screen in ("/ui/", "/ui/tasks", f"/ui/tasks/{task_id}", "/ui/kinds", "/ui/breakers"):
            shown = await client.get(screen, headers=BEARER)
            assert shown.status_code == 200, screen
            assert 'method="post"' not in shown.text.split("</header>")[1], screen
            assert 'id="read-only"' in shown.text

    async with admin(runtime) as client:
        shown = await client.get(f"/ui/tasks/{task_id}", headers=BEARER)
        assert 'class="retry"' in shown.text


async def test_payload_secrets_are_masked_and_actions_logged_with_who_asked(
    runtime: Runtime, audit: list[str]
) -> None:
    task_id = await cancelled_task(runtime, {"api_key": "k-123", "user": {"password": "pw"}})
    async with admin(runtime) as client:
        page = await client.get(f"/ui/tasks/{task_id}", headers=logged_in())
        assert "k-123" not in page.text
        assert "pw&#34;" not in page.text
        assert "&#34;api_key&#34;: &#34;***&#34;" in page.text
        done = await client.post(
            f"/ui/tasks/{task_id}/retry", data={"back": f"/ui/tasks/{task_id}"},
            headers=logged_in(),
        )  # fmt: skip
        assert (done.status_code, done.headers["location"]) == (303, f"/ui/tasks/{task_id}")
        again = await client.post(f"/ui/tasks/{task_id}/retry", headers=logged_in())
        assert again.status_code == 409
        assert "only dead or cancelled tasks can be retried" in again.text
        isolated = await client.post("/ui/breakers/billing/isolate", headers=logged_in())
        assert isolated.status_code == 303
        unknown = await client.post("/ui/breakers/nope/isolate", headers=logged_in())
        assert unknown.status_code == 404
        assert "api:billing" in unknown.text
    assert f"admin action retry on task {task_id} by 127.0.0.1 (cookie)" in audit
    assert "admin action isolate on breaker api:billing (was closed) by 127.0.0.1 (cookie)" in audit


async def test_without_a_token_a_rebound_name_is_refused_and_loopback_names_answer(
    runtime: Runtime,
) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own Host."""
    async with admin(runtime, token=None, own_names=["127.0.0.1"]) as client:
        for host in ("evil.example:8000", "evil.example", "127.0.0.1.evil.example"):
            refused = await client.get("/tasks", headers={"Host": host})
            assert refused.status_code == 421, host
            assert "does not answer to the name" in refused.json()["error"]
            page = await client.get("/ui/", headers={"Host": host})
            assert page.status_code == 421
            assert "text/html" in page.headers["content-type"]
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "127.0.0.2", "LOCALHOST"):
            assert (await client.get("/tasks", headers={"Host": host})).status_code == 200, host
    # The configured admin host is one of its names too; with a token the token decides.
    async with admin(runtime, token=None, own_names=["gladd.internal"]) as client:
        ok = await client.get("/tasks", headers={"Host": "gladd.internal:8000"})
        assert ok.status_code == 200
    async with admin(runtime, own_names=["127.0.0.1"]) as client:
        ok = await client.get("/tasks", headers={"Host": "anything.example", **BEARER})
        assert ok.status_code == 200


async def test_console_pages_may_not_be_framed_nor_run_scripts_from_elsewhere(
    runtime: Runtime,
) -> None:
    async with admin(runtime) as client:
        for path in ("/ui/", "/ui/login", "/ui/tasks"):
            page = await client.get(path, headers=logged_in())
            assert page.headers["x-frame-options"] == "DENY", path
            policy = page.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy
            assert "script-src 'self'" in policy
        api = await client.get("/tasks", headers=BEARER)
        assert "x-frame-options" not in api.headers  # JSON is not framed; nothing to add
