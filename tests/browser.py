"""Headless Chromium for the UI tests: Debian's chromium and chromedriver, driven by selenium.

    with chromium() as browser:
        log_in(browser, ui_url, env["PREFECT_API_AUTH_STRING"])
        browser.get(url)
        text = wait_for_text(browser, run.name, refuse=("Can't connect to Server API",))
        screenshot(browser, "ui-runs")

The browser is the system's (`make browser` installs it as root; `make test` runs that first). Its
driver is given to selenium by path, so selenium never asks its selenium-manager to download one: the
machines here reach package registries only. Missing binaries fail the test with the command that
installs them; a UI test is never skipped.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "sudo apt-get install chromium chromium-driver"
SCREENSHOTS = Path(__file__).resolve().parents[1] / ".local" / "screenshots"
WINDOW = (1600, 1000)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Nothing but the page's own requests: no update checks, component downloads or sync sign-in.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def require_browser() -> None:
    """Fail (never skip) when the browser or its driver is missing, naming the command that installs them."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: the UI tests need Debian's headless Chromium and its "
            f"driver. Install them with: {INSTALL} (or `make browser` as root; `make test` does that)",
            pytrace=False,
        )


@contextlib.contextmanager
def chromium(*, window: tuple[int, int] = WINDOW) -> Iterator:
    """A headless Chromium with a fresh profile (a temporary --user-data-dir), quit and removed after."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_browser()
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_text(driver) -> str:
    """What a person reads on the page: the body's rendered text ('' while the SPA has no body yet)."""
    from selenium.common.exceptions import WebDriverException

    try:
        return driver.execute_script("return document.body ? document.body.innerText : ''") or ""
    except WebDriverException:
        return ""


def wait_for_text(driver, *needles: str, timeout: float = 60, refuse: tuple[str, ...] = ()) -> str:
    """Poll the page's text until it contains every needle; return that text.

    Fails at once when a `refuse` text shows (an error banner, say), and after `timeout` seconds with
    the page's URL and the start of its text, so the failure says what the page showed instead."""
    deadline = time.monotonic() + timeout
    while True:
        text = page_text(driver)
        refused = [line.strip() for line in text.splitlines() if any(r in line for r in refuse)]
        if refused:
            path = _failure_screenshot(driver)
            raise AssertionError(
                f"{driver.current_url} says {refused[0]!r} (screenshot {path}); the page shows:\n{text[:1000]}"
            )
        if all(needle in text for needle in needles):
            return text
        if time.monotonic() > deadline:
            path = _failure_screenshot(driver)
            missing = [needle for needle in needles if needle not in text]
            raise AssertionError(
                f"{driver.current_url} did not show {missing} within {timeout:.0f} s "
                f"(screenshot {path}); it shows:\n{text[:2000]}"
            )
        time.sleep(0.5)


def wait_for(driver, probe, what: str, *, timeout: float = 60):
    """Poll `probe(driver)` until it returns something truthy; return that. After `timeout` seconds fail
    with `what`, the page's URL, a screenshot and the start of the page's text."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe(driver)
        except WebDriverException:  # the SPA re-rendered the element under us: look again
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            path = _failure_screenshot(driver)
            raise AssertionError(
                f"{driver.current_url}: {what} within {timeout:.0f} s (screenshot {path}); "
                f"the page shows:\n{page_text(driver)[:2000]}"
            )
        time.sleep(0.5)


def log_in(driver, ui_url: str, auth_string: str, *, timeout: float = 60) -> None:
    """Open the UI and, on the login page it sends a visitor without credentials to, type the API's auth
    string and press Login, as a person does. The UI keeps the credentials in this profile's
    localStorage, so the pages opened after it in the same browser need no login. (A deep link opened
    first is no substitute: its page fails on the API's 401 before the UI redirects to the login.)"""
    from selenium.webdriver.common.by import By

    driver.get(ui_url)
    field = wait_for(
        driver,
        lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "input[type=password]")), None),
        "no login form (a UI whose API wants no password, or one that did not load)",
        timeout=timeout,
    )
    field.send_keys(auth_string)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(
        driver,
        lambda d: "/login" not in urlsplit(d.current_url).path,
        "still on the login page after Login (a wrong password?)",
        timeout=timeout,
    )


def _failure_screenshot(driver) -> Path:
    """failed-<the page's path>.png, so two failing pages keep a screenshot each."""
    path = urlsplit(driver.current_url).path.strip("/")
    return screenshot(driver, "failed-" + (re.sub(r"[^A-Za-z0-9]+", "-", path)[:80] or "root"))


def screenshot(driver, name: str) -> Path:
    """Save the page as .local/screenshots/<name>.png (the repository's .local is gitignored); print and return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}", flush=True)
    return path
