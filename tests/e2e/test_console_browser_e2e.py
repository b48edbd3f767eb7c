"""The console at /ui in a real browser (headless Chromium) against a real gladd process:
log in, see the overview, filter tasks, open a task, retry a dead task and see it run,
isolate a breaker and see a task postponed, see a reload in the policies history, a
cross-site POST refused, read-only mode without a single action."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.e2e.browser import Browser, browser
from tests.e2e.conftest import LoggedGladd, wait_until
from tests.e2e.test_breakers_e2e import POLICIES, Switch, switch

pytestmark = pytest.mark.e2e
__all__ = ["browser", "switch"]  # fixtures

TOKEN = "console-s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedGladd]:
    instance = LoggedGladd(tmp_path_factory.mktemp("node"))
    yield instance
    instance.close()


def enqueue(node: LoggedGladd, kind: str, payload: object, **headers: str) -> int:
    made = httpx.post(
        f"{node.url}/tasks", json={"kind": kind, "payload": payload}, headers=headers, timeout=5
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def task(node: LoggedGladd, task_id: int) -> dict[str, object]:
    found = httpx.get(f"{node.url}/tasks/{task_id}", headers=BEARER, timeout=5)
    assert found.status_code == 200, found.text
    return dict(found.json())


def test_an_operator_logs_in_finds_a_dead_task_retries_it_and_isolates_a_breaker(
    node: LoggedGladd, switch: Switch, browser: Browser
) -> None:
    port = switch.server_address[1]
    node.policies.write_text(POLICIES.format(port=port))
    node.start_serving(GLADD_ADMIN_TOKEN=TOKEN)
    url = f"http://127.0.0.1:{port}/status"
    auth = {"Authorization": BEARER["Authorization"]}
    # One failing call: dead at once (one attempt), the breaker (two failures) still closed.
    dead = enqueue(node, "http.request", {"method": "GET", "url": url}, **auth)
    wait_until(lambda: task(node, dead)["state"] == "dead", timeout=10, what="dead")
    done = enqueue(node, "gladd.noop", {"api_key": "k-live-123", "n": 1}, **auth)
    wait_until(lambda: task(node, done)["state"] == "succeeded", timeout=10, what="done")

    # The console asks for the token once, then shows the overview.
    browser.open(f"{node.url}/ui/")
    assert "/ui/login" in browser.url
    browser.shot("login")
    browser.type("#token", "wrong")
    browser.follow("#log-in")
    assert "Wrong token" in browser.text("#wrong-token")
    browser.type("#token", TOKEN)
    browser.follow("#log-in")
    browser.retrying(lambda: browser.url.endswith("/ui/"), what="back on the overview")
    assert browser.text('#counts b[data-state="dead"]') == "1"
    assert browser.text('#counts b[data-state="succeeded"]') == "1"
    assert "this node" in browser.text("main")
    assert browser.attribute("#throughput", "data-succeeded") == "1"
    assert browser.attribute("#throughput", "data-failed") == "1"
    browser.shot("overview")

    # Filter the tasks by state, then open the dead one.
    browser.follow('nav a[href="/ui/tasks"]')
    browser.select("#filter-state", "dead")
    browser.follow("#filter")
    browser.retrying(lambda: "state=dead" in browser.url, what="the filter applied")
    rows = browser.retrying(
        lambda: browser.texts("tr.task td:nth-child(3)") or None, what="the dead rows"
    )
    assert rows == ["dead"]
    browser.shot("tasks filtered")
    browser.follow(f'tr.task[data-id="{dead}"] a')
    browser.retrying(lambda: browser.url.endswith(f"/ui/tasks/{dead}"), what="the detail page")
    assert browser.text("#task-state") == "dead"
    assert "503" in browser.text("table.errors")
    browser.shot("task detail dead")

    # A secret-looking payload field is masked on its page.
    browser.open(f"{node.url}/ui/tasks/{done}")
    assert "k-live-123" not in browser.driver.page_source
    assert '"api_key": "***"' in browser.text("#payload")

    # Retry from the dead screen: the task runs, and its page (polling) shows it succeed.
    switch.failing = False
    browser.follow('nav a[href="/ui/dead"]')
    browser.shot("dead")
    browser.follow(f'button.retry[data-task="{dead}"]')
    browser.retrying(lambda: browser.count(f'tr.task[data-id="{dead}"]') == 0, what="retried")
    browser.open(f"{node.url}/ui/tasks/{dead}")
    browser.retrying(
        lambda: browser.text("#task-state") == "succeeded", timeout=15, what="live: succeeded"
    )
    browser.shot("task detail succeeded")

    # Isolate the service's breaker: a new task for it waits, and its page says why.
    browser.follow('nav a[href="/ui/breakers"]')
    browser.follow('tr.breaker[data-name="up:up"] button.isolate')
    browser.retrying(
        lambda: browser.text('tr.breaker[data-name="up:up"] td:nth-child(2)').startswith(
            "isolated"
        ),
        what="isolated",
    )
    browser.shot("breakers isolated")
    hits = switch.hits
    held = enqueue(node, "http.request", {"method": "GET", "url": url}, **auth)
    browser.open(f"{node.url}/ui/tasks/{held}")
    reason = browser.retrying(
        lambda: next((t for t in browser.texts("#waiting li.waiting") if "up:up" in t), None),
        timeout=15,
        what="the isolation named in waiting",
    )
    assert reason.startswith("breaker up:up isolated by operator 127.0.0.1 (cookie) since")
    assert browser.text("#task-state") == "pending"
    browser.shot("task held by the breaker")
    assert switch.hits == hits

    # The other screens, each seen once.
    for screen, expected in (
        ("kinds", "http.request"),
        ("schedules", "no schedules in the policies"),
        ("policies", "[breaker.up]"),
    ):
        browser.follow(f'nav a[href="/ui/{screen}"]')
        browser.retrying(lambda s=screen: browser.url.endswith(f"/ui/{s}"), what=screen)
        assert expected in browser.text("main"), screen
        browser.shot(screen)

    # A reload appears in the history on the policies screen (live), with its diff. The
    # file watcher may see the edit before the POST does: either applies generation 2.
    edited = POLICIES.format(port=port).replace(
        'retry = "once"\n', 'retry = "once"\nconcurrency = 4\n'
    )
    node.policies.write_text(edited)
    reloaded = httpx.post(f"{node.url}/reload", headers=BEARER, timeout=10)
    assert reloaded.status_code == 200, reloaded.text
    browser.retrying(lambda: browser.text("#generation") == "2", what="live: generation 2")
    entry = browser.text('li.generation[data-generation="2"]')
    assert re.search(r" by (api|file|poll), sha256 ", entry), entry
    assert "executor.concurrency" in entry
    browser.click("#diff-2 summary")
    assert browser.texts("#diff-2 pre span.add") == ["+concurrency = 4"]
    browser.shot("policies history")

    browser.follow(".logout button")
    browser.retrying(lambda: "/ui/login" in browser.url, what="logged out")
    browser.open(f"{node.url}/ui/breakers")
    assert "/ui/login" in browser.url
    code, log = node.stop()
    assert code == 0
    assert f"admin action retry on task {dead} by 127.0.0.1 (cookie)" in log
    assert "admin action isolate on breaker up:up (was closed) by 127.0.0.1 (cookie)" in log


class _Elsewhere(BaseHTTPRequestHandler):
    """A page of another site whose form POSTs to the admin address as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        page = (
            f'<html><body><form id="f" method="post" action="{self.target}">'
            '<button id="go">win a prize</button></form>'
            "<script>document.getElementById('f').submit()</script></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cross_site_post_is_refused_and_read_only_mode_has_no_buttons(
    node: LoggedGladd, switch: Switch, browser: Browser
) -> None:
    node.policies.write_text(POLICIES.format(port=switch.server_address[1]))
    node.start_serving()  # no token: loopback only, and no cookie that could stop CSRF
    _Elsewhere.target = f"{node.url}/ui/breakers/up:up/isolate"
    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    try:
        # "localhost" is another site than "127.0.0.1" to the browser.
        browser.open(f"http://localhost:{elsewhere.server_address[1]}/")
        refusal = browser.retrying(
            lambda: browser.count("#refusal") and browser.text("#refusal"), what="the refusal"
        )
        assert refusal.startswith("cross-site request refused: Sec-Fetch-Site is 'cross-site'")
        browser.shot("cross-site refused")
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()
    listed = httpx.get(f"{node.url}/breakers", timeout=5).json()["breakers"]
    assert [b["state"] for b in listed if b["name"] == "up:up"] == ["closed"]

    # The same console from its own pages works: a same-origin POST passes.
    browser.open(f"{node.url}/ui/breakers")
    browser.follow('tr.breaker[data-name="up:up"] button.isolate')
    browser.retrying(
        lambda: browser.text('tr.breaker[data-name="up:up"] td:nth-child(2)').startswith(
            "isolated"
        ),
        what="isolated from the console itself",
    )
    node.stop()

    # Read-only: every screen without a single action, and the API refusing them too.
    node.start_serving(GLADD_ADMIN_READ_ONLY="true")
    dead = enqueue(node, "gladd.sleep", {"seconds": 0})
    for screen in ("", "tasks", f"tasks/{dead}", "dead", "kinds", "breakers", "schedules"):
        browser.open(f"{node.url}/ui/{screen}")
        assert browser.text("#read-only") == "read-only"
        assert browser.count("main form[method=post]") == 0, screen
        assert browser.count("#live button") == 0, screen
        browser.shot(f"read-only {screen or 'overview'}")
    refused = httpx.post(f"{node.url}/breakers/up:up/reset", timeout=5)
    assert refused.status_code == 403
    assert "GLADD_ADMIN_READ_ONLY" in refused.json()["error"]


def test_the_live_part_polls_only_while_the_tab_is_visible(
    node: LoggedGladd, switch: Switch, browser: Browser
) -> None:
    """Every 2 s while shown; nothing while hidden; at once when shown again. And no page
    script is refused by the console's Content-Security-Policy on the way."""
    node.policies.write_text(POLICIES.format(port=switch.server_address[1]))
    node.start_serving()
    browser.open(f"{node.url}/ui/")
    polls = (
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.initiatorType === 'xmlhttprequest').length"
    )
    seen = browser.retrying(lambda: browser.driver.execute_script(polls) >= 1, what="a poll")
    assert seen
    hide = (
        "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => "
        "arguments[0]}); document.dispatchEvent(new Event('visibilitychange'));"
    )
    browser.driver.execute_script(hide.replace("arguments[0]", "'hidden'"))
    hidden_at = browser.driver.execute_script(polls)
    hidden_until = time.monotonic() + 5  # two and a half poll periods
    while time.monotonic() < hidden_until:
        assert browser.driver.execute_script(polls) == hidden_at, "polled while hidden"
        time.sleep(0.25)
    browser.driver.execute_script(hide.replace("arguments[0]", "'visible'"))
    browser.retrying(
        lambda: browser.driver.execute_script(polls) > hidden_at, what="a poll once shown"
    )
    refused = [
        e["message"]
        for e in browser.driver.get_log("browser")
        if "Content Security Policy" in e["message"]
    ]
    assert refused == []
