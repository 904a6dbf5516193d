"""The market report's figures and chart, on hand-made listings (the stack test compares them with SQL)."""

from __future__ import annotations

import io
import struct

import pandas as pd
import pytest

from berlin_rentals.market_report import (
    LISTING_COLUMNS,
    ROOM_BANDS,
    ROOM_TOP,
    SIZE_BANDS,
    SIZE_TOP,
    UNKNOWN,
    YEAR_BANDS,
    YEAR_TOP,
    band,
    chart_png,
    market_figures,
)


def listings(rows: list[tuple]) -> pd.DataFrame:
    """Hand-made listings: (id, district, living space, rooms, year built, cold rent[, quality flags])."""
    return pd.DataFrame(
        [row + (None,) * (len(LISTING_COLUMNS) - len(row)) for row in rows], columns=list(LISTING_COLUMNS)
    )


@pytest.mark.parametrize(
    ("value", "bands", "top", "expected"),
    [
        (39.99, SIZE_BANDS, SIZE_TOP, "under 40 m²"),
        (40, SIZE_BANDS, SIZE_TOP, "40–60 m²"),
        (100, SIZE_BANDS, SIZE_TOP, "100 m² and more"),
        (None, SIZE_BANDS, SIZE_TOP, UNKNOWN),
        (float("nan"), SIZE_BANDS, SIZE_TOP, UNKNOWN),
        (1, ROOM_BANDS, ROOM_TOP, "1 room"),
        (1.5, ROOM_BANDS, ROOM_TOP, "1.5–2 rooms"),
        (2, ROOM_BANDS, ROOM_TOP, "1.5–2 rooms"),
        (4.5, ROOM_BANDS, ROOM_TOP, "4.5 rooms and more"),
        (1918, YEAR_BANDS, YEAR_TOP, "before 1919"),
        (1919, YEAR_BANDS, YEAR_TOP, "1919–1949"),
        (2015, YEAR_BANDS, YEAR_TOP, "2015 and later"),
    ],
)
def test_each_value_falls_in_the_band_its_label_names(value, bands, top, expected):
    assert band(value, bands, top) == expected


def test_figures_are_counts_and_interpolated_quantiles_per_band():
    frame = listings(
        [
            (1, "Mitte", 50, 2, 1900, 500),
            (2, "Mitte", 50, 2, 1900, 1000),
            (3, "Mitte", 100, 3, 2016, 1500),
            (4, "Mitte", None, 3, None, 800),  # no living space: in the rent figures, not in those per m²
            (5, "Pankow", 40, 1, 1960, 400),
            (6, "Pankow", 40, 1, 1960, None),  # no cold rent: left out everywhere
            (7, None, 60, 2.5, 1995, 600),
            (8, "Mitte", 0.5, 2, 1900, -50, "base_rent_negative"),  # flagged: left out everywhere
        ]
    )
    figures = market_figures(frame).set_index(["dimension", "band"])

    mitte = figures.loc[("district", "Mitte")]
    assert mitte.listings == 4
    assert mitte.median_cold_rent == 900.0  # between 800 and 1000
    assert mitte.p10_cold_rent == pytest.approx(500 + 0.3 * 300)  # rank 0.3 between 500 and 800
    assert mitte.p90_cold_rent == pytest.approx(1000 + 0.7 * 500)
    assert mitte.median_cold_rent_per_sqm == 15.0  # 10, 15, 20 per m²
    assert mitte.p10_cold_rent_per_sqm == 11.0
    assert figures.loc[("district", "Pankow")].listings == 1
    assert figures.loc[("district", UNKNOWN)].listings == 1

    assert figures.loc[("size", "40–60 m²")].listings == 3  # 50, 50, 40 (the unpriced 40 left out)
    assert figures.loc[("size", UNKNOWN)].listings == 1
    assert figures.loc[("rooms", "1.5–2 rooms")].median_cold_rent == 750.0
    assert figures.loc[("construction_year", "before 1919")].median_cold_rent_per_sqm == 15.0
    assert figures.loc[("construction_year", "2015 and later")].listings == 1
    # every priced listing is counted once in each dimension
    counts = market_figures(frame).groupby("dimension")["listings"].sum()
    assert set(counts) == {6}


def test_bands_read_in_order_and_districts_alphabetically():
    frame = listings([(i, d, s, 2, 2000, 700) for i, (d, s) in enumerate([("Wedding", 120), ("Adlershof", 30)])])
    figures = market_figures(frame)
    assert list(figures[figures.dimension == "district"].band) == ["Adlershof", "Wedding"]
    assert list(figures[figures.dimension == "size"].band) == ["under 40 m²", "100 m² and more"]


def test_the_chart_is_a_png_picture():
    frame = listings([(i, f"District {i % 3}", 30 + i * 7, 1 + i % 4, 1900 + i * 9, 400 + i * 55) for i in range(15)])
    png = chart_png(market_figures(frame), "test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", io.BytesIO(png).getbuffer()[16:24])
    assert width > 800 and height > 600


def test_a_crafted_district_name_cannot_inject_markdown_into_the_report():
    from markdown_it import MarkdownIt

    from berlin_rentals.market_report import MarketReport, report_markdown

    crafted = "Mitte](javascript:alert(1)) <img src=x onerror=alert(1)>"
    figures = market_figures(listings([(1, crafted, 50, 2, 1900, 700), (2, "Pankow", 50, 2, 1900, 600)]))
    report = MarketReport(2, figures, "reports/x.png", b"\x89PNG\r\n\x1a\n")
    text = report_markdown(report, "t")
    tokens = [t for block in MarkdownIt().parse(text) for t in (block.children or [])]
    # the chart only, embedded: no link to follow, none to expire
    assert [t.attrs.get("src") for t in tokens if t.type == "image"] == ["data:image/png;base64,iVBORw0KGgo="]
    assert not [t for t in tokens if t.type in ("link_open", "html_inline")]
