"""Tasks of the market-report flow: read the BI view as the BI role, publish the chart and the artifacts."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from berlin_rentals import markdown
from berlin_rentals.config import Settings
from berlin_rentals.market_report import LISTING_COLUMNS, MarketReport, report_markdown
from berlin_rentals.s3 import s3_client
from berlin_rentals.warehouse.sql import statement
from tasks.common import io_step, warehouse_engine


@io_step(name="read-market-listings")
def read_market_listings(settings: Settings) -> pd.DataFrame:
    """Every listing of the BI schema's market view, read with the BI role's own login."""
    with warehouse_engine(settings.bi_url()).connect() as conn:
        rows = conn.execute(statement("bi/select_market_listings.sql", settings.warehouse_bi_schema)).all()
    return pd.DataFrame(rows, columns=list(LISTING_COLUMNS))


@io_step(name="publish-chart")
def publish_chart(settings: Settings, png: bytes, at: datetime) -> str:
    """The chart into the staging bucket under the reports prefix, kept there beside the artifact: its key."""
    key = f"{settings.reports_prefix}market-report-{at:%Y%m%dT%H%M%SZ}.png"
    s3_client(settings).put_object(Bucket=settings.staging_bucket, Key=key, Body=png, ContentType="image/png")
    return key


@task(name="publish-report-artifacts")
def publish_report_artifacts(report: MarketReport, title: str) -> None:
    create_table_artifact(
        key="market-report-figures",
        table=markdown.cells(
            report.figures.astype(object).where(report.figures.notna(), None).to_dict(orient="records")
        ),
        description=f"{title}: per district and band of size, rooms and year built (EUR)",
    )
    create_markdown_artifact(key="market-report", markdown=report_markdown(report, title), description=title)
