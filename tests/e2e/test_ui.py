"""The Prefect UI as a person meets it: headless Chromium on the session's own stack.

A batch is uploaded with the event path running, so the worker runs `ingest-file` for it as in
production; that run's name and state are read from the API (run names are Prefect's to choose), then
the UI must show them: the runs list, the run's own page, and its deployment's page. A UI told the
wrong API address shows "Can't connect to Server API" (or another server's runs) and fails here.
Screenshots land in .local/screenshots/ (printed with `pytest -s`).
"""

from __future__ import annotations

import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort

from berlin_rentals.config import Settings
from berlin_rentals.s3 import s3_client
from tests.browser import chromium, log_in, require_browser, screenshot, wait_for, wait_for_text
from tests.helpers import upload

pytestmark = pytest.mark.slow

NO_API = "Can't connect to Server API"  # the UI's banner when the API it was told of does not answer
UI_SECONDS = 60
# The state names the Prefect 3.8 UI knows. Its state filters are lists of these names, so its
# default "All except scheduled" (a deployment's runs tab) never lists a run whose state has another
# name, e.g. Completed(name="Loaded"), even though its type is COMPLETED.
UI_STATE_NAMES = (
    "Scheduled",
    "Late",
    "Resuming",
    "AwaitingRetry",
    "AwaitingConcurrencySlot",
    "Pending",
    "Paused",
    "Suspended",
    "Running",
    "Retrying",
    "Completed",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Crashed",
    "Failed",
    "TimedOut",
)


def _run_of_key(key: str):
    """The ingest-file deployment's newest flow run for this object key (None if there is none yet)."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-file"])),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["ingest-file"])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=200,
        )
    return next((run for run in runs if run.parameters.get("key") == key), None)


@pytest.fixture(scope="module")
def ingest_run(event_path, stack_env, sample_zip):
    """A finished ingest-file run of this session, started by the upload's own S3 event through the worker."""
    require_browser()  # before spending a worker run on a test that cannot pass
    settings = Settings.from_env(stack_env)
    key, _ = upload(s3_client(settings), settings, sample_zip.name, sample_zip.read_bytes())
    deadline = time.monotonic() + 180
    run = None
    while time.monotonic() < deadline:
        run = _run_of_key(key)
        if run is not None and run.state is not None and run.state.is_final():
            return run
        time.sleep(1)
    raise AssertionError(
        f"no finished ingest-file run for {key} within 180 s (last seen: "
        f"{run and run.name} {run and run.state and run.state.name})"
    )


@pytest.fixture
def ui_url(stack_env) -> str:
    return stack_env["PREFECT_UI_URL"].rstrip("/")


@pytest.fixture
def auth_string(stack_env) -> str:
    return stack_env["PREFECT_API_AUTH_STRING"]


def _list_item(browser, run_name: str) -> dict | None:
    """The run list item named run_name as the page shows it: {'name': 'ingest-file\\n<run>', 'state': ...}."""
    return browser.execute_script(
        """
        for (const item of document.querySelectorAll('.flow-run-list-item')) {
            const name = item.querySelector('.state-list-item__name');
            const badge = item.querySelector('.state-badge');
            if (name && badge && name.innerText.split('\\n').map(s => s.trim()).includes(arguments[0]))
                return {name: name.innerText, state: badge.innerText.trim()};
        }
        return null;""",
        run_name,
    )


def _state_shown_for(browser, run_name: str) -> str | None:
    item = _list_item(browser, run_name)
    return item and item["state"]


def test_the_runs_page_lists_the_run_the_worker_made(ingest_run, ui_url, auth_string):
    with chromium() as browser:
        log_in(browser, ui_url, auth_string)
        browser.get(f"{ui_url}/runs")
        text = wait_for_text(browser, ingest_run.name, timeout=UI_SECONDS, refuse=(NO_API,))
        assert NO_API not in text
        # The row is drawn before its flow's name and its state arrive; wait for them (and a full screenshot).
        item = wait_for(
            browser,
            lambda b: (i := _list_item(b, ingest_run.name)) and "ingest-file" in i["name"] and i,
            f"run {ingest_run.name} listed without its flow ingest-file",
            timeout=UI_SECONDS,
        )
        screenshot(browser, "ui-runs")
    assert item["state"] == ingest_run.state.name, (
        f"listed as {item['state']!r}, the API says {ingest_run.state.name!r}"
    )


def test_the_run_and_its_deployment_pages_show_its_state(ingest_run, ui_url, auth_string):
    state = ingest_run.state.name
    with chromium() as browser:
        log_in(browser, ui_url, auth_string)
        browser.get(f"{ui_url}/runs/flow-run/{ingest_run.id}")
        wait_for_text(browser, ingest_run.name, timeout=UI_SECONDS, refuse=(NO_API,))
        shown = wait_for(
            browser,
            lambda b: b.execute_script(
                "const badge = document.querySelector('.page-heading .state-badge');"
                "return badge ? badge.innerText.trim() : null;"
            ),
            f"no state badge in the heading of run {ingest_run.name}",
            timeout=UI_SECONDS,
        )
        screenshot(browser, "ui-flow-run")
        assert shown == state, f"the run's page says {shown!r}, the API {state!r}"

        browser.get(f"{ui_url}/deployments/deployment/{ingest_run.deployment_id}")
        wait_for_text(browser, "ingest-file", timeout=UI_SECONDS, refuse=(NO_API,))
        hint = (
            ""
            if state in UI_STATE_NAMES
            else (
                f" (its state is named {state!r}, not one of the UI's state names: the deployment page's default "
                f"filter 'All except scheduled' selects runs by those names and hides it)"
            )
        )
        listed = wait_for(
            browser,
            lambda b: _state_shown_for(b, ingest_run.name),
            f"run {ingest_run.name} not listed with a state on its deployment's page{hint}",
            timeout=UI_SECONDS,
        )
        screenshot(browser, "ui-deployment")
        assert listed == state, f"the deployment's page lists {ingest_run.name} as {listed!r}, the API {state!r}"


# What a crafted key can carry into an artifact: GFM's extended autolinks (live in marked, the UI's renderer,
# with no markdown syntax at all), a link, an image, HTML.
CRAFTED_KEYS = (
    "raw/https://evil.example/steal.zip",
    "raw/www.evil.example/x.zip",
    "raw/mallory@evil.example.zip",
    "raw/x](javascript:alert(1)).zip",
    "raw/<img src=x onerror=alert(1)>.zip",
)


def test_an_artifact_of_crafted_keys_opens_no_link_in_the_ui(stack_env, ui_url, auth_string):
    """The lineage's markdown escapes untrusted text (berlin_rentals/markdown.py); this is the UI's own
    renderer reading it, in prose, in a table cell and in a code span, as a person opens the artifact."""
    require_browser()
    from prefect.artifacts import create_markdown_artifact

    from berlin_rentals.markdown import code, text

    lines = [f"- key {text(key)} at {code(key)}" for key in CRAFTED_KEYS]
    table = ["| key |", "| --- |"] + [f"| {text(key)} |" for key in CRAFTED_KEYS]
    artifact_id = create_markdown_artifact(
        "\n".join(["# crafted keys", "", *lines, "", *table]), description=text(CRAFTED_KEYS[0])
    )
    with chromium() as browser:
        log_in(browser, ui_url, auth_string)
        browser.get(f"{ui_url}/artifacts/artifact/{artifact_id}")
        shown = wait_for_text(browser, "crafted keys", "mallory@evil.example.zip", timeout=UI_SECONDS, refuse=(NO_API,))
        screenshot(browser, "ui-crafted-artifact")
        live = browser.execute_script(
            "return [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"
            ".filter(h => /evil|javascript:|mailto:/i.test(h))"
        )
        images = browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length")
    assert live == [] and images == 0, f"links {live}, images {images}"
    for key in CRAFTED_KEYS:  # each still reads as the key it is
        assert key in shown, key
