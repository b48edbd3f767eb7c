"""The console's task lists in a real browser (headless Chromium) against a real gladd
process: filter by error text, page through with "older" and back with "newer", then
bulk-retry every dead task from the dead screen — the count first, then the confirmed
action — see them run, and read one's timeline."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.e2e.browser import Browser, browser
from tests.e2e.conftest import LoggedGladd, wait_until

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # fixtures

POLICIES = """
schema_version = 1
[executor]
retry = "once"
poll_interval = "100ms"
[retry.once]
attempts = 1
deadline = "1h"
[breaker.shop]
failures = 1000
[services.shop]
breaker = "shop"
timeout = "2s"
hosts = ["127.0.0.1:{port}"]
[tasks."http.request"]
service = "shop"
"""
MISSING = 120  # more than a page (100)


class Shop(ThreadingHTTPServer):
    healthy = False


class _Handler(BaseHTTPRequestHandler):
    """``/missing``: 404 "no such order"; ``/down``: 503 "disk on fire"; 200 once healthy."""

    server: Shop

    def do_GET(self) -> None:
        if self.server.healthy:
            status, message = 200, "ok"
        elif self.path.startswith("/missing"):
            status, message = 404, "no such order"
        else:
            status, message = 503, "disk on fire"
        body = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def shop() -> Iterator[Shop]:
    server = Shop(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoggedGladd]:
    instance = LoggedGladd(tmp_path_factory.mktemp("node"))
    yield instance
    instance.close()


def stats(node: LoggedGladd) -> dict[str, int]:
    return dict(httpx.get(f"{node.url}/tasks/stats", timeout=5).json()["totals"])


def requests(node: LoggedGladd, url: str, n: int) -> list[int]:
    batch = [{"kind": "http.request", "payload": {"method": "GET", "url": url}}] * n
    made = httpx.post(f"{node.url}/tasks", json=batch, timeout=10)
    assert made.status_code == 201, made.text
    return [int(t["id"]) for t in made.json()["tasks"]]


def page_ids(browser: Browser) -> list[int]:
    return [int(i or 0) for i in browser.unswapped(lambda: _ids(browser))]


def _ids(browser: Browser) -> list[str | None]:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    rows = browser.driver.find_elements(By.CSS_SELECTOR, "tr.task")
    return [r.get_attribute("data-id") for r in rows]


def test_an_operator_filters_by_error_pages_through_and_bulk_retries_the_dead(
    node: LoggedGladd, shop: Shop, browser: Browser
) -> None:
    port = shop.server_address[1]
    node.policies.write_text(POLICIES.format(port=port))
    node.start_serving()  # no token: the admin address is loopback only
    missing = requests(node, f"http://127.0.0.1:{port}/missing", MISSING)
    down = requests(node, f"http://127.0.0.1:{port}/down", 1)
    wait_until(lambda: stats(node)["dead"] == MISSING + 1, timeout=30, what="every request dead")

    # Filter by error text: only the 404s, newest first, a page of 100 and then the rest.
    browser.open(f"{node.url}/ui/tasks")
    browser.type("#filter-error", "No Such Order")
    browser.follow("#filter", what="the filtered page")
    assert "error=No+Such+Order" in browser.url
    first = page_ids(browser)
    assert first == sorted(missing, reverse=True)[:100]
    assert browser.count("#page-newer") == 0
    browser.shot("tasks filtered by error")
    browser.follow("#page-next", what="the next page")
    assert "error=No+Such+Order" in browser.url
    assert browser.attribute("#filter-error", "value") == "No Such Order"
    second = page_ids(browser)
    assert second == sorted(missing, reverse=True)[100:]
    assert "the last page" in browser.text("#pager")
    browser.shot("tasks filtered, page 2")
    browser.follow("#page-newer", what="back to the newer page")
    assert page_ids(browser) == first

    # The other error's text finds the other task only.
    browser.type("#filter-error", "disk on fire")
    browser.follow("#filter", what="the other filter")
    assert page_ids(browser) == down

    # Retry every dead task from the dead screen: the count to confirm, then they run.
    shop.healthy = True
    browser.follow('nav a[href="/ui/dead"]')
    assert "Retry all 121 dead tasks" in browser.text("#bulk-retry")
    browser.shot("dead")
    browser.follow("#bulk-retry", what="the count to confirm")
    assert browser.text("#bulk-question") == "retry 121 tasks?"
    browser.shot("bulk retry preview")
    browser.follow("#confirm", what="back on the dead screen")
    assert browser.url.endswith("/ui/dead?done=retried+121+tasks")
    assert browser.text("#done") == "retried 121 tasks"
    wait_until(lambda: stats(node)["succeeded"] == MISSING + 1, timeout=30, what="every retry run")
    browser.open(f"{node.url}/ui/")
    browser.retrying(
        lambda: browser.text('#counts b[data-state="succeeded"]') == str(MISSING + 1),
        what="the overview counting them succeeded",
    )
    assert browser.text('#by-kind tr[data-kind="http.request"] td[data-state="succeeded"]') == (
        str(MISSING + 1)
    )
    browser.shot("overview after the bulk retry")

    # A task's page tells its story: dead at its first attempt, retried by the operator,
    # then succeeded.
    browser.open(f"{node.url}/ui/tasks?state=succeeded")
    browser.follow(f'tr.task[data-id="{down[0]}"] a', what="the task's page")
    assert browser.text("#task-state") == "succeeded"
    events = browser.texts("#timeline tr.entry td.event")
    assert events == [
        "created",
        "claimed",
        "attempt started",
        "attempt ended",
        "retried",
        "claimed",
        "attempt started",
        "attempt ended",
    ]
    ended = browser.texts('#timeline tr.entry[data-event="attempt ended"] td:nth-child(4)')
    assert "outcome dead" in ended[0]
    assert "disk on fire" in ended[0]
    assert "outcome succeeded" in ended[1]
    assert browser.text('#timeline tr.entry[data-event="retried"]').endswith(
        "by 127.0.0.1 (no token)"
    )
    assert browser.text("#started-at") != "-"
    assert browser.text("#durations").startswith("waited ")
    browser.shot("task timeline")
    code, log = node.stop()
    assert code == 0
    assert "admin action retry on tasks " in log
    assert "and 101 more by 127.0.0.1 (no token)" in log
