"""Catch-up planning (pure); the catch-up flow on the real stack is in tests/stack/test_catch_up.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from berlin_rentals.catch_up import (
    FAILED,
    LOADED,
    SKIPPED,
    LedgerEntry,
    Outcome,
    Plan,
    RawObject,
    bar_chart,
    catch_up_window,
    due_objects,
    files_per_hour,
    gaps,
    gaps_markdown,
    hour_runs,
    hours_in,
    in_window,
    lineage_table,
    listing_prefix,
    outcome_of,
    plan_catch_up,
    report_table,
    summarise,
)
from berlin_rentals.ingest_result import IngestFailed, IngestResult
from berlin_rentals.source import InvalidSource, SourceObject
from berlin_rentals.synthetic import batch_name

T0 = datetime(2031, 5, 1, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def obj(hour: int, etag: str = "a" * 32, name: str | None = None) -> RawObject:
    return RawObject(name or f"raw/{batch_name(at(hour))}.zip", etag, 10, at(hour) + timedelta(minutes=3))


# --- the window ---------------------------------------------------------------------------------


def test_the_window_defaults_to_the_24_hours_before_now():
    now = datetime(2031, 5, 2, 10, 17, 42, tzinfo=UTC)
    assert catch_up_window(None, None, now) == (now - timedelta(hours=24), now)
    assert catch_up_window(None, at(5), now) == (at(-19), at(5))
    assert catch_up_window(at(1), None, now) == (at(1), now)


def test_window_bounds_are_utc_naive_ones_read_as_utc():
    berlin = timezone(timedelta(hours=2))
    since, until = catch_up_window(datetime(2031, 5, 1, 3), datetime(2031, 5, 1, 8, tzinfo=berlin), T0)
    assert (since, until) == (at(3), at(6))
    assert since.tzinfo is UTC and until.tzinfo is UTC


def test_a_reversed_window_is_refused():
    with pytest.raises(ValueError, match="reversed"):
        catch_up_window(at(2), at(1), T0)


def test_hours_in_a_window_are_whole_hours_from_since_up_to_until():
    assert hours_in(at(0.5), at(3)) == [at(1), at(2)]
    assert hours_in(at(0), at(3.5)) == [at(0), at(1), at(2), at(3)]
    assert hours_in(T0, T0) == []
    assert hours_in(datetime(2031, 5, 1, 1), datetime(2031, 5, 1, 3)) == [at(1), at(2)]  # naive is UTC


def test_the_window_holds_batch_hours_from_since_inclusive_to_until_exclusive():
    objects = [obj(h) for h in range(6)]
    assert in_window(objects, at(1), at(4)) == objects[1:4]
    assert in_window(objects, at(1.5), at(4)) == objects[2:4]  # hour 1 began before since


def test_a_run_looks_at_files_of_its_hours_and_files_uploaded_in_it():
    in_hours = obj(2)
    late = RawObject(f"raw/{batch_name(at(-72))}.zip", "b" * 32, 10, at(3))  # an old hour, uploaded in the window
    old_upload_future_hour = RawObject(f"raw/{batch_name(at(30))}.zip", "c" * 32, 10, at(-5))
    neither = RawObject(f"raw/{batch_name(at(-50))}.zip", "d" * 32, 10, at(-49))
    objects = [in_hours, late, old_upload_future_hour, neither]
    assert due_objects(objects, at(0), at(24)) == [in_hours, late]
    assert due_objects(objects, at(0), at(24), everything=True) == objects


def test_the_listing_is_read_a_page_at_a_time_with_one_ledger_query_per_page(monkeypatch):
    """Years of hourly files: a full reconciliation never holds the whole listing's S3 responses, nor sends
    one IN list of every key."""
    import tasks.catch_up
    from berlin_rentals.config import Settings

    pages = [
        {
            "Contents": [
                {"Key": f"raw/f{p:02d}_{i:04d}.zip", "ETag": '"' + "e" * 32 + '"', "Size": 1, "LastModified": T0}
                for i in range(1000 if p < 4 else 321)
            ]
        }
        for p in range(5)
    ]
    pages[2]["Contents"].append({"Key": "raw/readme.txt", "ETag": '"' + "e" * 32 + '"', "Size": 1, "LastModified": T0})
    queries: list[int] = []

    class S3:
        def get_paginator(self, name):
            assert name == "list_objects_v2"
            return self

        def paginate(self, **kwargs):
            assert kwargs["Prefix"] == "raw/" and kwargs["PaginationConfig"]["PageSize"] <= 1000
            return iter(pages)

    class Connection:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, query, params):
            queries.append(len(params["keys"]))
            return [
                type("Row", (), {"key": k, "etag": "e" * 32, "status": "loaded", "attempts": 0, "error": None})
                for k in params["keys"][:1]
            ]

    class Engine:
        def connect(self):
            return Connection()

    monkeypatch.setattr(tasks.catch_up, "s3_client", lambda settings: S3())
    monkeypatch.setattr(tasks.catch_up, "warehouse_engine", lambda url: Engine())
    monkeypatch.setattr(tasks.catch_up, "get_run_logger", lambda: None)
    settings = Settings(warehouse_url="postgresql+psycopg://nowhere/db")
    objects, ledger = tasks.catch_up.find_raw_objects.fn(settings, "raw/", at(100), at(101), all_files=True)
    assert len(objects) == 4321 and queries == [1000, 1000, 1000, 1000, 321]
    assert len(ledger) == 5 and all(entry.status == "loaded" for entry in ledger.values())
    queries.clear()
    objects, _ = tasks.catch_up.find_raw_objects.fn(settings, "raw/", at(100), at(101))
    assert objects == [] and queries == []  # nothing due in this window: no ledger query at all


def test_the_batch_hour_follows_the_same_rule_as_the_loaded_source():
    named = RawObject("raw/x/immobilienscout24_berlin_20310501_07.zip", "b" * 32, 1, at(9.99))
    unnamed = RawObject("raw/export.zip", "b" * 32, 1, datetime(2031, 5, 1, 7, 59, tzinfo=timezone(timedelta(hours=2))))
    for raw, expected in ((named, at(7)), (unnamed, at(5))):
        source = SourceObject("rentals-raw", raw.key, raw.etag, raw.size, raw.last_modified)
        assert raw.batch_hour == source.batch_hour == expected


def test_a_listing_prefix_must_stay_under_the_raw_prefix():
    assert listing_prefix("raw/", None) == "raw/"
    assert listing_prefix("raw/", "raw/2031/") == "raw/2031/"
    for outside in ("elsewhere/", "raw/../secret/", "raw/\x00/"):
        with pytest.raises(InvalidSource):
            listing_prefix("raw/", outside)


# --- classification against the ledger ------------------------------------------------------------


def test_only_versions_not_loaded_and_not_parked_are_ingested():
    objects = [obj(h, str(h + 1) * 32) for h in range(7)]
    ledger = {
        (objects[0].key, objects[0].etag): LedgerEntry("loaded", 0),
        (objects[1].key, objects[1].etag): LedgerEntry("failed", 2, "timeout"),
        (objects[2].key, objects[2].etag): LedgerEntry("parked", 1, "not a zip"),
        (objects[3].key, "0" * 32): LedgerEntry("loaded", 0),  # another (older) version of that key
        (objects[4].key, objects[4].etag): LedgerEntry("loading", 0),  # left by a crashed run
        (objects[5].key, objects[5].etag): LedgerEntry("superseded", 0),  # old content uploaded again
    }
    plan = plan_catch_up(list(reversed(objects)), ledger)
    assert plan.already_loaded == [objects[0]]
    assert plan.parked == [objects[2]]
    assert plan.to_ingest == [objects[1], objects[3], objects[4], objects[5], objects[6]]  # by batch hour


def test_an_ingest_result_becomes_loaded_skipped_or_failed():
    def result(status, **fields):
        return IngestResult(status, "rentals-raw", "raw/a.zip", "e", **fields)

    assert outcome_of(result("loaded")) == (LOADED, "")
    assert outcome_of(result("skipped", ledger="loaded")) == (SKIPPED, "ledger says loaded")
    assert outcome_of(result("superseded", error="now has ETag x")) == (SKIPPED, "now has ETag x")
    failed = IngestFailed(result("failed", ledger="parked", error="BadArchive: s3://rentals-raw/raw/a.zip: not a zip"))
    assert outcome_of(failed) == (FAILED, "BadArchive: s3://rentals-raw/raw/a.zip: not a zip")
    assert outcome_of(ValueError("not a zip archive")) == (FAILED, "ValueError: not a zip archive")
    assert outcome_of(None)[0] == FAILED


# --- gaps, chart, report --------------------------------------------------------------------------


def test_gaps_and_the_chart_show_hours_without_files():
    hours = hours_in(T0, at(8))
    per_hour = files_per_hour([obj(0), obj(0, name="raw/extra_20310501_00.zip"), obj(1), obj(7)], hours)
    assert list(per_hour.values()) == [2, 1, 0, 0, 0, 0, 0, 1]
    assert gaps(per_hour) == [at(h) for h in range(2, 7)]
    chart = bar_chart(per_hour).splitlines()
    assert chart[0] == "2031-05-01 00:00  " + "█" * 20 + " 2"
    assert chart[1] == "2031-05-01 01:00  " + "█" * 10 + " 1"
    assert chart[2] == "2031-05-01 02:00 … 2031-05-01 06:00  no files (5 hours)"
    assert len(chart) == 4


def test_short_empty_stretches_stay_visible_in_the_chart():
    per_hour = files_per_hour([obj(0), obj(3)], hours_in(T0, at(4)))
    assert [line.split("  ")[1] for line in bar_chart(per_hour).splitlines()] == [
        "█" * 20 + " 1",
        "· 0",
        "· 0",
        "█" * 20 + " 1",
    ]


def test_a_long_window_is_charted_per_day():
    hours = hours_in(T0, at(24 * 10))
    per_hour = files_per_hour([obj(h) for h in range(0, 24 * 10, 2) if h // 24 != 4], hours)
    chart = bar_chart(per_hour).splitlines()
    assert chart[0] == "(files per day)" and len(chart) == 11
    assert chart[1] == "2031-05-01  " + "█" * 20 + " 12"
    assert chart[5] == "2031-05-05  · 0"


def test_gap_runs_collapse_consecutive_hours():
    assert hour_runs([at(5), at(1), at(2), at(3), at(7)]) == [(at(1), at(3)), (at(5), at(5)), (at(7), at(7))]
    assert hour_runs([]) == []


def test_the_gap_list_names_stretches_and_stays_short():
    objects = [obj(h) for h in range(0, 200, 2)]  # every other hour empty: 100 one-hour gaps
    report = summarise(T0, at(200), objects, Plan(already_loaded=objects), [], {})
    assert len(report["gaps"]) == 100
    markdown = gaps_markdown(T0, at(200), objects, {}, report, max_gap_lines=10)
    assert "- 2031-05-01 01:00\n" in markdown and "- … and 90 more stretches" in markdown
    assert markdown.count("\n- ") == 11
    stretch = gaps_markdown(T0, at(30), [obj(0), obj(29)], {}, summarise(T0, at(30), [obj(0), obj(29)], Plan(), [], {}))
    assert "- 2031-05-01 01:00 – 2031-05-02 04:00 (28 h)" in stretch


def test_the_report_counts_this_run_and_reads_parked_from_the_ledger_after_it():
    objects = [obj(h, str(h + 1) * 32) for h in (0, 1, 3, 4, 5)]
    plan = Plan(to_ingest=objects[1:], already_loaded=objects[:1])
    outcomes = [
        Outcome(objects[1], LOADED, "", 1.0),
        Outcome(objects[2], FAILED, "BadArchive: not a zip", 0.2),
        Outcome(objects[3], SKIPPED, "ledger says loaded", 0.1),  # an event's run was first
        Outcome(objects[4], SKIPPED, "now has ETag ...", 0.1),  # replaced since the listing
    ]
    after = {(o.key, o.etag): LedgerEntry("loaded") for o in objects[:2] + objects[3:4]}
    after[(objects[2].key, objects[2].etag)] = LedgerEntry("parked", 1, "BadArchive: s3://…: not a zip archive")
    report = summarise(T0, at(6), objects, plan, outcomes, after)
    assert report == {
        "since": T0.isoformat(),
        "until": at(6).isoformat(),
        "scope": f"batch hours and uploads in [{T0.isoformat()}, {at(6).isoformat()})",
        "found": 5,
        "loaded_now": 1,
        "already_loaded": 2,
        "failed_now": 1,
        "skipped_now": 1,
        "parked": [objects[2].key],
        "failed": [objects[2].key],
        "gaps": [at(2).isoformat()],
    }
    table = {row["figure"]: (row["files"], row["keys"]) for row in report_table(report)}
    assert table["parked"] == (1, objects[2].key) and table["hours without a file"] == (1, "")
    markdown = gaps_markdown(T0, at(6), objects, after, report)
    assert "- 2031-05-01 02:00\n" in markdown
    assert f"- `{objects[2].key}` (ETag `{objects[2].etag}`, 1 attempt(s)): BadArchive" in markdown


def test_the_lineage_table_has_one_row_per_ingested_file_with_the_same_columns():
    objects = [obj(h, str(h + 1) * 32) for h in (0, 1, 2)]
    outcomes = [  # in the order they finished
        Outcome(objects[2], FAILED, "ObjectGone: s3://… is gone", 0.1),
        Outcome(objects[0], LOADED, "", 1.0),
        Outcome(objects[1], SKIPPED, "now has ETag x", 0.1),
    ]
    rows = {
        (objects[0].key, objects[0].etag): {
            "source_object": f"s3://b/{objects[0].key}",
            "etag": objects[0].etag,
            "status": "loaded",
            "records_read": 11,
            "seconds": 1.0,
        }
    }
    after = {(objects[2].key, objects[2].etag): LedgerEntry("failed", 1, "gone")}
    table = lineage_table(outcomes, rows, after)
    assert [(r["key"], r["etag"], r["status"]) for r in table] == [
        (objects[0].key, objects[0].etag, "loaded"),
        (objects[1].key, objects[1].etag, "skipped (now has ETag x)"),
        (objects[2].key, objects[2].etag, "failed (failed)"),
    ]
    assert all(list(r) == ["key", "etag", "status", "records_read", "seconds", "error"] for r in table)
    assert table[0]["records_read"] == 11 and table[1]["records_read"] is None
    assert table[2]["error"] == "ObjectGone: s3://… is gone"


def test_the_batch_and_fan_out_settings_default_and_refuse_what_is_not_a_count():
    from berlin_rentals.config import ConfigError, Settings

    base = {"WAREHOUSE_URL": "postgresql://unused"}
    settings = Settings.from_env(base)
    assert (settings.batch_max_files, settings.batch_max_records) == (24, 50_000)
    assert (settings.fanout_files, settings.fanout_run_files) == (500, 240)
    assert Settings.from_env(base | {"ETL_BATCH_MAX_FILES": "1"}).batch_max_files == 1
    for name, value, says in (
        ("ETL_BATCH_MAX_FILES", "0", "at least 1"),
        ("ETL_FANOUT_RUN_FILES", "lots", "must be an integer"),
    ):
        with pytest.raises(ConfigError, match=says):
            Settings.from_env(base | {name: value})


def test_a_batch_takes_files_in_order_up_to_its_size_and_never_two_of_one_etag():
    from berlin_rentals.batch import TransformStats
    from berlin_rentals.catch_up import batch_is_full, take_batch

    def staged(key: str, etag: str, lines: int) -> IngestResult:
        return IngestResult("staged", "b", key, etag, stats=TransformStats(lines_read=lines))

    waiting = [staged("a", "1", 10), staged("b", "1", 10), staged("c", "2", 10), staged("d", "3", 10)]
    batch, rest = take_batch(waiting, max_files=3, max_records=1000)
    assert [r.key for r in batch] == ["a", "c", "d"] and [r.key for r in rest] == ["b"]
    assert batch_is_full(batch, 3, 1000) and not batch_is_full(batch[:2], 3, 1000)
    # the records bound, past the first file (a file larger than the bound still loads, alone)
    batch, rest = take_batch([staged("a", "1", 900), staged("b", "2", 200)], max_files=24, max_records=1000)
    assert [r.key for r in batch] == ["a"] and [r.key for r in rest] == ["b"]
    assert take_batch([staged("a", "1", 5000)], 24, 1000)[0][0].key == "a"
