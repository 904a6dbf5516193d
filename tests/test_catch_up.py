"""Catch-up planning (pure) and the catch-up flow on the real stack."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from berlin_rentals.catch_up import RawObject, bar_chart, files_per_hour, gaps, hours_in, in_window, plan_catch_up
from berlin_rentals.synthetic import batch_name, derived_batch, read_sample_records
from flows.catch_up import catch_up
from tests.helpers import query, upload

T0 = datetime(2031, 5, 1, 0, tzinfo=UTC)


def obj(hour: int, etag: str = "a" * 32, name: str | None = None) -> RawObject:
    moment = T0 + timedelta(hours=hour)
    return RawObject(name or f"raw/{batch_name(moment)}.zip", etag, 10, moment + timedelta(minutes=3))


def test_hours_in_a_window_are_whole_hours_from_since_up_to_until():
    assert hours_in(T0 + timedelta(minutes=30), T0 + timedelta(hours=3)) == [T0 + timedelta(hours=h) for h in (1, 2)]
    assert hours_in(T0, T0) == []


def test_objects_without_an_hour_in_the_name_use_their_last_modified_hour():
    odd = RawObject("raw/export.zip", "b" * 32, 1, T0 + timedelta(hours=5, minutes=59))
    assert odd.batch_hour == T0 + timedelta(hours=5)
    assert in_window([obj(0), obj(4), odd], T0 + timedelta(hours=1), T0 + timedelta(hours=6)) == [obj(4), odd]


def test_only_versions_not_loaded_and_not_parked_are_ingested():
    objects = [obj(0, "1" * 32), obj(1, "2" * 32), obj(2, "3" * 32), obj(3, "4" * 32), obj(4, "5" * 32)]
    ledger = {(objects[0].key, "1" * 32): "loaded", (objects[1].key, "2" * 32): "failed",
              (objects[2].key, "3" * 32): "parked", (objects[3].key, "0" * 32): "loaded"}  # another version
    plan = plan_catch_up(objects, ledger)
    assert plan.already_loaded == [objects[0]]
    assert plan.parked == [objects[2]]
    assert plan.to_ingest == [objects[1], objects[3], objects[4]]


def test_gaps_and_the_chart_show_hours_without_files():
    hours = hours_in(T0, T0 + timedelta(hours=8))
    per_hour = files_per_hour([obj(0), obj(0, name="raw/extra_20310501_00.zip"), obj(1), obj(7)], hours)
    assert gaps(per_hour) == [T0 + timedelta(hours=h) for h in range(2, 7)]
    chart = bar_chart(per_hour).splitlines()
    assert chart[0].endswith("2") and chart[1].endswith("1")
    assert "no files, 5 hours" in chart[2] and len(chart) == 4


def test_catch_up_loads_what_was_missed_reports_gaps_and_leaves_parked_files_alone(settings, s3):
    folder = uuid.uuid4().hex[:8]
    records = read_sample_records()
    day = datetime(2031, 6, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 300)
    keys = {}
    for h in (0, 1, 3):  # hour 2 has no file
        hour = day + timedelta(hours=h)
        body = derived_batch(records, hour, rent_factor=1 + h / 10, modified=hour, seed=h)
        keys[h] = upload(s3, settings, batch_name(hour) + ".zip", body, folder=folder)
    poison = upload(s3, settings, batch_name(day + timedelta(hours=3)) + "_b.zip", b"not a zip", folder=folder)
    from flows.ingest import ingest_file

    assert ingest_file(settings.raw_bucket, *keys[0])["status"] == "loaded"
    prefix = f"{settings.raw_prefix}{folder}/"
    report = catch_up(since=day, until=day + timedelta(hours=4), max_concurrency=2, prefix=prefix)
    assert (report["found"], report["loaded_now"], report["already_loaded"], report["failed_now"]) == (4, 2, 1, 1)
    assert report["parked"] == [poison[0]]
    assert report["gaps"] == [(day + timedelta(hours=2)).isoformat()]
    loaded = {row.key for row in query(settings, "SELECT key FROM {schema}.load_ledger WHERE status = 'loaded'")}
    assert loaded == {keys[h][0] for h in (0, 1, 3)}

    again = catch_up(since=day, until=day + timedelta(hours=4), prefix=prefix)
    assert (again["loaded_now"], again["already_loaded"], again["failed_now"]) == (0, 3, 0)
    assert again["parked"] == [poison[0]]
    attempts = query(settings, "SELECT attempts FROM {schema}.load_ledger WHERE key = :k", k=poison[0])[0].attempts
    assert attempts == 1  # a parked file is not retried until someone releases it
