"""The brief's dashboard as a Prefect report: Berlin rents by district, size, rooms and year built.

Daily (deployment `market-report`) and on demand from the UI or `python -m flows.market_report`. It reads
as the BI role, so it can show nothing an analyst could not see; its chart goes to the staging bucket
under `reports/` and is embedded in the run's markdown artifact.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from prefect.logging import get_run_logger

from berlin_rentals.config import Settings
from berlin_rentals.market_report import MarketReport, chart_png, market_figures, with_bands
from tasks.report import publish_chart, publish_report_artifacts, read_market_listings


@flow(name="market-report", log_prints=True)
def market_report() -> dict[str, object]:
    """Median cold rent and cold rent per m² (with p10 and p90) per district and band, as artifacts."""
    logger = get_run_logger()
    settings = Settings.from_env()
    at = datetime.now(UTC)
    title = f"Berlin rentals: cold rent by district, size, rooms and year built ({at:%Y-%m-%d %H:%M} UTC)"
    listings = read_market_listings(settings)
    figures = market_figures(listings)
    priced = len(with_bands(listings))
    png = chart_png(figures, title)
    key = publish_chart(settings, png, at)
    report = MarketReport(listings=priced, figures=figures, chart_key=key, chart_png=png)
    publish_report_artifacts(report, title)
    logger.info(
        "market report of %d listings (%d without a cold rent left out): %d bands; chart s3://%s/%s",
        priced,
        len(listings) - priced,
        len(figures),
        settings.staging_bucket,
        key,
    )
    return {"listings": priced, "bands": len(figures), "chart": f"s3://{settings.staging_bucket}/{key}"}


if __name__ == "__main__":
    print(market_report())
