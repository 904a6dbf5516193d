"""The market report as its users meet it: the deployment run by the stack's worker, as the BI role.

Its figures must equal the same aggregates computed in SQL on the BI view (PERCENTILE_CONT is the same
linear interpolation as pandas' quantile), its chart must be a PNG in the staging bucket, and the Prefect
UI must show that picture in the run's markdown artifact, in a real headless Chromium.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment

from berlin_rentals import markdown
from berlin_rentals.config import Settings
from berlin_rentals.market_report import ROOM_BANDS, ROOM_TOP, SIZE_BANDS, SIZE_TOP, UNKNOWN, YEAR_BANDS, YEAR_TOP
from berlin_rentals.s3 import s3_client
from berlin_rentals.synthetic import batch_name, derived_batch, read_sample_records
from devstack.demo import wait_until_idle
from flows.ingest import ingest_file
from tasks.common import warehouse_engine
from tests.browser import chromium, log_in, require_browser, screenshot, wait_for
from tests.helpers import upload

pytestmark = pytest.mark.slow


def _case(column: str, bands, top) -> str:
    """The bands of market_report.band as an SQL CASE over the BI view's column (the test's own oracle)."""
    whens = " ".join(f"WHEN {column} >= {low} AND {column} < {high} THEN '{label}'" for low, high, label in bands)
    return f"CASE {whens} WHEN {column} >= {top[0]} THEN '{top[1]}' ELSE '{UNKNOWN}' END"


ORACLE = """
SELECT {band} AS band, COUNT(*) AS listings,
       ROUND(CAST(PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY base_rent) AS NUMERIC), 2) AS median,
       ROUND(CAST(PERCENTILE_CONT(0.1) WITHIN GROUP (ORDER BY base_rent) AS NUMERIC), 2) AS p10,
       ROUND(CAST(PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY base_rent) AS NUMERIC), 2) AS p90,
       ROUND(CAST(PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY base_rent / NULLIF(living_space, 0)) AS NUMERIC), 2)
           AS median_per_sqm
FROM {schema}.market_listings
WHERE base_rent IS NOT NULL AND quality_flags IS NULL
GROUP BY 1
"""


@pytest.fixture(scope="module")
def report_run(deployed_stack, stack_env, sample_zip):
    """Three hours of batches loaded, then one market-report run by the worker; (run, its settings)."""
    require_browser()
    settings = Settings.from_env(stack_env)
    s3 = s3_client(settings)
    records = read_sample_records()
    for n in range(3):
        hour = datetime(2033, 5, 1, tzinfo=UTC) + timedelta(hours=n)
        body = derived_batch(records, hour, rent_factor=1 + n / 10, modified=hour, seed=n, new_listings=4)
        key, etag = upload(s3, settings, batch_name(hour) + ".zip", body, folder="market")
        state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
        assert state.is_completed(), state.message
    wait_until_idle()  # no event-driven load changes the view while the report and the oracle read it
    stack = deployed_stack
    started = not stack._running_pid("worker")
    if started:
        stack.start_service("worker")
    try:
        run = run_deployment("market-report/market-report", timeout=180)
    finally:
        if started:
            stack.stop_service("worker")
    assert run.state.is_completed(), f"market-report ended {run.state.name}: {run.state.message}"
    return run, settings


def _artifacts(run_id) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return {artifact.key: artifact for artifact in found}


def test_the_reports_figures_are_the_same_aggregates_in_sql_on_the_bi_view(report_run):
    run, settings = report_run
    table = _artifacts(run.id)["market-report-figures"].data
    rows = table if isinstance(table, list) else json.loads(table)
    figures = {(row["dimension"], row["band"]): row for row in rows}
    bands = {
        "district": f"COALESCE(district, '{UNKNOWN}')",
        "size": _case("living_space", SIZE_BANDS, SIZE_TOP),
        "rooms": _case("number_of_rooms", ROOM_BANDS, ROOM_TOP),
        "construction_year": _case("construction_year", YEAR_BANDS, YEAR_TOP),
    }
    checked = 0
    with warehouse_engine(settings.bi_url()).connect() as conn:
        for dimension, band in bands.items():
            sql = ORACLE.format(band=band, schema=settings.warehouse_bi_schema)
            # Table cells are escaped markdown (the UI renders them): "1.5–2 rooms" is stored as "1\\.5–2 rooms".
            expected = {markdown.text(row.band): row for row in conn.execute(sa.text(sql))}
            shown = {b: r for (d, b), r in figures.items() if d == dimension}
            assert set(shown) == set(expected), dimension
            for label, row in expected.items():
                got = shown[label]
                assert got["listings"] == row.listings, (dimension, label)
                assert got["median_cold_rent"] == pytest.approx(float(row.median), abs=0.011), (dimension, label)
                assert got["p10_cold_rent"] == pytest.approx(float(row.p10), abs=0.011), (dimension, label)
                assert got["p90_cold_rent"] == pytest.approx(float(row.p90), abs=0.011), (dimension, label)
                if row.median_per_sqm is not None:
                    assert got["median_cold_rent_per_sqm"] == pytest.approx(float(row.median_per_sqm), abs=0.011)
                checked += 1
    assert checked >= 8  # several districts and bands, not an empty view


def test_the_chart_is_a_png_in_the_staging_bucket_and_the_ui_shows_it_from_the_artifact_itself(report_run, stack_env):
    run, settings = report_run
    artifacts = _artifacts(run.id)
    markdown = artifacts["market-report"].data
    key = next(part for part in markdown.split("`") if part.startswith(settings.reports_prefix))
    png = s3_client(settings).get_object(Bucket=settings.staging_bucket, Key=key)["Body"].read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # The picture is in the artifact, the same bytes: nothing to fetch through a link that dies with the
    # credentials that signed it (hours, for an ECS task role's).
    embedded = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    assert f"]({embedded})" in markdown
    assert "X-Amz-" not in markdown and "market-report-chart" not in artifacts

    ui = stack_env["PREFECT_UI_URL"].rstrip("/")
    with chromium() as browser:
        log_in(browser, ui, stack_env["PREFECT_API_AUTH_STRING"])
        browser.get(f"{ui}/artifacts/artifact/{artifacts['market-report'].id}")
        # The picture itself, decoded by the UI's own renderer from the data URI: an <img> that failed to
        # load (or one the renderer's sanitiser stripped of its src) has naturalWidth 0.
        size = wait_for(
            browser,
            lambda d: d.execute_script(
                "const i = [...document.querySelectorAll('img')].find(i => i.src === arguments[0]);"
                "return i && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null;",
                embedded,
            ),
            "the market report's chart shown from its artifact",
            timeout=60,
        )
        time.sleep(0.5)
        print(f"chart shown at {size[0]}x{size[1]}: {screenshot(browser, 'market-report-artifact')}")
    assert size[0] > 800 and size[1] > 600
