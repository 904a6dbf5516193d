"""The benchmark's account of where the ingest's time goes: its parts and the bound they set."""

from __future__ import annotations

import zipfile

import pytest

from bench import ingest as bench
from berlin_rentals.archive import iter_lines


def test_each_part_of_the_budget_does_its_whole_share_of_the_work(sample_zip):
    with zipfile.ZipFile(sample_zip) as archive:
        inflated = sum(info.file_size for info in archive.infolist())
    lines = [line.raw for line in iter_lines(sample_zip, sample_zip.name)]
    assert bench.inflate_only(sample_zip) == inflated
    assert bench.read_lines(sample_zip) == len(lines) == bench.floor(sample_zip)
    assert bench.json_scan(lines) == len(lines)
    assert bench.decode_fields(lines) == len(lines)


def test_the_budget_splits_nested_timings_and_bounds_the_ratio_by_the_cores(monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    parts = {
        "inflate": 0.100,
        "read_lines": 0.120,
        "json_scan": 0.050,
        "decode": 0.090,
        "transform": 0.300,
        "stage": 0.040,
        "load": 0.200,
    }
    spent = bench.budget(parts, records=1000, floor_seconds=0.100)
    assert spent["us_per_record"] == {
        "inflate": 100.0,
        "split into lines": 20.0,
        "JSON scan (builds nothing)": 50.0,
        "decode the model's fields": 40.0,
        "build rows and Arrow tables": 90.0,
        "stage Parquet to S3": 40.0,
        "load into PostgreSQL": 200.0,
    }
    assert spent["sum_us_per_record"] == 540.0
    assert spent["floor_us_per_record"] == 100.0
    assert spent["target_us_per_record"] == pytest.approx(142.9)
    # 540 µs of work on 2 cores is 270 µs a record at best: 100 / 270 of the floor's rate
    assert spent["best_on_all_cores_vs_floor"] == pytest.approx(0.37, abs=0.001)
    assert spent["python_bound_us_per_record"] == 200.0  # split, scan, decode and build
    assert spent["unskippable_us_per_record"] == 150.0  # inflate and the bare scan
