"""Headless Chromium from the system's packages, driven by selenium, for the console's
real-browser tests.

``/usr/bin/chromium`` through ``/usr/bin/chromedriver`` (Debian's ``chromium`` and
``chromium-driver``; ``.ci/run`` installs them): selenium-manager never downloads a browser
or a driver. Without them the tests skip, but under ``CI=true`` they fail. Every screen a
test looks at is saved as a screenshot under the test's tmp dir; a failing test's report
lists them (the hook in ``conftest.py``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_ATTR = "console_browser"  # on the test item, for the report hook in conftest.py


def _missing() -> str | None:
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401, PLC0415 - only where the browser tests run
    except ImportError:
        absent.append("the selenium package (the test extra)")
    return ", ".join(absent) or None


class Browser:
    """One headless Chromium window; waits are for a condition, never fixed."""

    def __init__(self, shots: Path) -> None:
        from selenium import webdriver  # noqa: PLC0415
        from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            "--disable-gpu",
            "--no-first-run",
        ):
            options.add_argument(argument)
        # The page's console errors (a script the Content-Security-Policy refused, say).
        options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
        self.driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
        self.shots = shots
        self.taken_paths: list[Path] = []

    def open(self, url: str) -> None:
        self.driver.get(url)

    def shot(self, name: str) -> Path:
        """Save the window as ``NN-name.png`` under the test's tmp dir."""
        number = len(self.taken_paths) + 1
        path = self.shots / f"{number:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png"
        self.driver.save_screenshot(str(path))
        self.taken_paths.append(path)
        return path

    def retrying(self, act: Callable[[], T], *, timeout: float = 10, what: str = "") -> T:
        """``act()`` once it works: the pages' live part is swapped every few seconds, so
        an element found just before a swap may be gone (stale) when used."""
        from selenium.common.exceptions import WebDriverException  # noqa: PLC0415

        deadline = time.monotonic() + timeout
        while True:
            try:
                result = act()
            except WebDriverException as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"not within {timeout}s: {what} ({exc.msg})") from exc
            else:
                if result:
                    return result
                if time.monotonic() > deadline:
                    raise AssertionError(f"not within {timeout}s: {what} (last: {result!r})")
            time.sleep(0.1)

    def unswapped(self, read: Callable[[], T], *, timeout: float = 10) -> T:
        """``read()`` once the element it reads is there: again when the page it was clicked
        to is still loading (no such element yet) or the live part was swapped under it (a
        stale element). A click that navigates returns before the next page is in, so
        reading at once finds the old page or none (the chromedriver stack traces of a
        loaded machine)."""
        from selenium.common.exceptions import (  # noqa: PLC0415
            NoSuchElementException,
            StaleElementReferenceException,
        )

        deadline = time.monotonic() + timeout
        while True:
            try:
                return read()
            except (NoSuchElementException, StaleElementReferenceException):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return self.unswapped(lambda: str(self.driver.find_element(By.CSS_SELECTOR, css).text))

    def texts(self, css: str) -> list[str]:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return self.unswapped(
            lambda: [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css)]
        )

    def attribute(self, css: str, name: str) -> str | None:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return self.unswapped(
            lambda: self.driver.find_element(By.CSS_SELECTOR, css).get_attribute(name)
        )

    def count(self, css: str) -> int:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return len(self.driver.find_elements(By.CSS_SELECTOR, css))

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        def press() -> bool:
            self.driver.find_element(By.CSS_SELECTOR, css).click()
            return True

        self.retrying(press, what=f"click {css}")

    def follow(self, css: str, *, what: str = "") -> None:
        """Click what ``css`` names (a link, a form's button) and wait for the page it leads
        to: reading the page at once would find the old one, or none yet."""
        since = self.page_id()
        self.click(css)
        self.navigated(since, what=what or f"the page after clicking {css}")

    def type(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        def fill() -> None:
            field = self.driver.find_element(By.CSS_SELECTOR, css)
            field.clear()
            field.send_keys(text)

        self.unswapped(fill)

    def select(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By  # noqa: PLC0415
        from selenium.webdriver.support.select import Select  # noqa: PLC0415

        self.unswapped(
            lambda: Select(self.driver.find_element(By.CSS_SELECTOR, css)).select_by_value(value)
        )

    def page_id(self) -> str:
        """An id of the page now shown: another once a click has navigated."""
        return str(self.driver.execute_script("return window.performance.timeOrigin"))

    def navigated(self, since: str, *, what: str, timeout: float = 10) -> None:
        """Wait until a page other than ``since`` (:meth:`page_id`) is in, fully loaded."""
        self.retrying(
            lambda: (
                self.page_id() != since
                and self.driver.execute_script("return document.readyState") == "complete"
            ),
            timeout=timeout,
            what=what,
        )

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    missing = _missing()
    if missing is not None:
        message = (
            f"the console's browser tests need {missing} (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    window = Browser(shots)
    setattr(request.node, BROWSER_ATTR, window)
    yield window
    window.close()
