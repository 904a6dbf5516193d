"""The brief's dashboard: the price distribution of Berlin rentals by district, size, rooms and year built.

Pure: a frame of listings in (as the BI role reads them from the BI schema's `market_listings`), the
figures, a chart and the artifact's markdown out. Quantiles are linear interpolation between the two
nearest values, as pandas' default and SQL's PERCENTILE_CONT compute them, so the report can be checked
against the same aggregates in SQL on the BI view.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

import pandas as pd

from berlin_rentals import markdown

# Columns the report reads (sql/bi/select_market_listings.sql); cold rent is base_rent.
LISTING_COLUMNS = (
    "listing_id",
    "district",
    "living_space",
    "number_of_rooms",
    "construction_year",
    "base_rent",
    "quality_flags",
)

UNKNOWN = "unknown"

# Half-open bands [low, high): each label names the values it holds. Rooms come in halves (2.5 rooms).
SIZE_BANDS = ((0, 40, "under 40 m²"), (40, 60, "40–60 m²"), (60, 80, "60–80 m²"), (80, 100, "80–100 m²"))
SIZE_TOP = (100, "100 m² and more")
ROOM_BANDS = ((0, 1.5, "1 room"), (1.5, 2.5, "1.5–2 rooms"), (2.5, 3.5, "2.5–3 rooms"), (3.5, 4.5, "3.5–4 rooms"))
ROOM_TOP = (4.5, "4.5 rooms and more")
# Berlin's building periods as the rent index (Mietspiegel) groups them, coarsened.
YEAR_BANDS = ((0, 1919, "before 1919"), (1919, 1950, "1919–1949"), (1950, 1973, "1950–1972"), (1973, 1991, "1973–1990"))
YEAR_BANDS += ((1991, 2003, "1991–2002"), (2003, 2015, "2003–2014"))
YEAR_TOP = (2015, "2015 and later")

DIMENSIONS = ("district", "size", "rooms", "construction_year")
FIGURE_COLUMNS = (
    "dimension",
    "band",
    "listings",
    "median_cold_rent",
    "p10_cold_rent",
    "p90_cold_rent",
    "median_cold_rent_per_sqm",
    "p10_cold_rent_per_sqm",
    "p90_cold_rent_per_sqm",
)


def band(value: float | None, bands: tuple[tuple[float, float, str], ...], top: tuple[float, str]) -> str:
    """The label of the band holding value; `unknown` for a missing one (it is a group of its own)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNKNOWN
    value = float(value)
    for low, high, label in bands:
        if low <= value < high:
            return label
    return top[1] if value >= top[0] else UNKNOWN


def band_order(dimension: str) -> list[str]:
    """Bands in reading order: small to large, old to new; districts alphabetically (by the caller)."""
    spec = {
        "size": (SIZE_BANDS, SIZE_TOP),
        "rooms": (ROOM_BANDS, ROOM_TOP),
        "construction_year": (YEAR_BANDS, YEAR_TOP),
    }
    bands, top = spec[dimension]
    return [label for _, _, label in bands] + [top[1], UNKNOWN]


def with_bands(listings: pd.DataFrame) -> pd.DataFrame:
    """Priced listings, with their rent per m² and their band in each dimension.

    A listing without cold rent says nothing about prices, and one the transform flagged (a negative rent,
    an implausible living space: transform.quality_flags) would skew them: both are left out of every
    figure. One without living space counts for the cold rent but not for the rent per m²."""
    priced = listings["base_rent"].notna() & listings["quality_flags"].isna()
    frame = listings.loc[priced, list(LISTING_COLUMNS)].copy()
    for column in ("living_space", "number_of_rooms", "base_rent"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["construction_year"] = pd.to_numeric(frame["construction_year"], errors="coerce").astype("float64")
    space = frame["living_space"].where(frame["living_space"] > 0)
    frame["cold_rent_per_sqm"] = frame["base_rent"] / space
    frame["district"] = frame["district"].fillna(UNKNOWN).astype(str)
    frame["size"] = [band(v, SIZE_BANDS, SIZE_TOP) for v in frame["living_space"]]
    frame["rooms"] = [band(v, ROOM_BANDS, ROOM_TOP) for v in frame["number_of_rooms"]]
    frame["construction_year_band"] = [band(v, YEAR_BANDS, YEAR_TOP) for v in frame["construction_year"]]
    return frame


def _rounded(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 2)


def market_figures(listings: pd.DataFrame) -> pd.DataFrame:
    """Per dimension and band: listings, median/p10/p90 of cold rent and of cold rent per m² (EUR)."""
    frame = with_bands(listings)
    rows = []
    for dimension in DIMENSIONS:
        column = "construction_year_band" if dimension == "construction_year" else dimension
        groups = frame.groupby(column, sort=False)
        if dimension == "district":
            order = sorted(groups.groups, key=lambda d: (d == UNKNOWN, d))
        else:
            order = [b for b in band_order(dimension) if b in groups.groups]
        for label in order:
            group = groups.get_group(label)
            rent, per_sqm = group["base_rent"], group["cold_rent_per_sqm"].dropna()
            rows.append(
                (
                    dimension,
                    label,
                    len(group),
                    *(_rounded(rent.quantile(q)) for q in (0.5, 0.1, 0.9)),
                    *(_rounded(per_sqm.quantile(q)) if len(per_sqm) else None for q in (0.5, 0.1, 0.9)),
                )
            )
    return pd.DataFrame(rows, columns=list(FIGURE_COLUMNS))


def chart_png(figures: pd.DataFrame, title: str) -> bytes:
    """Four panels, one per dimension: median cold rent per m² of each band, whiskers from p10 to p90."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a worker; also keeps matplotlib from probing for one
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9), constrained_layout=True)
    names = {"district": "District", "size": "Living space", "rooms": "Rooms", "construction_year": "Year built"}
    for ax, dimension in zip(axes.flat, DIMENSIONS, strict=True):
        part = figures[(figures["dimension"] == dimension) & figures["median_cold_rent_per_sqm"].notna()]
        median = part["median_cold_rent_per_sqm"].astype(float)
        low = (median - part["p10_cold_rent_per_sqm"].astype(float)).clip(lower=0)
        high = (part["p90_cold_rent_per_sqm"].astype(float) - median).clip(lower=0)
        positions = range(len(part))
        ax.barh(list(positions), median, xerr=[low, high], color="#4c72b0", ecolor="#333333", capsize=3)
        ax.set_yticks(list(positions), [f"{b} ({n})" for b, n in zip(part["band"], part["listings"], strict=True)])
        ax.invert_yaxis()
        ax.set_title(names[dimension])
        ax.set_xlabel("cold rent per m² (EUR): median, p10–p90")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class MarketReport:
    listings: int
    figures: pd.DataFrame
    chart_key: str
    chart_png: bytes

    @property
    def chart_data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.chart_png).decode("ascii")


def report_markdown(report: MarketReport, title: str) -> str:
    """The report's markdown artifact: the chart, embedded, and a summary.

    The picture is in the artifact itself (a data URI, which the UI's renderer shows), not behind a
    presigned link: such a link is valid only while the credentials that signed it are, hours for an ECS
    task role's, so yesterday's report would show no picture. District names come from the source:
    escaped, like every value an artifact embeds."""
    districts = report.figures[report.figures["dimension"] == "district"]
    dearest = districts.dropna(subset=["median_cold_rent_per_sqm"]).nlargest(3, "median_cold_rent_per_sqm")
    lines = [
        f"# {title}",
        "",
        f"{report.listings:,} listings with a plausible cold rent; figures per band in the table artifact "
        "`market-report-figures`. Bands with few listings are noisy: the count is beside each.",
        "",
        f"![Cold rent per m² by district, size, rooms and year built]({report.chart_data_uri})",
        "",
        "Dearest districts by median cold rent per m²: "
        + ", ".join(f"{markdown.text(row.band)} {row.median_cold_rent_per_sqm:.2f} EUR" for row in dearest.itertuples())
        + ".",
        "",
        f"Chart: also {markdown.code(report.chart_key)} in the staging bucket.",
    ]
    return "\n".join(lines)
