"""Every staged value fits its warehouse column, or its listing is rejected: one odd value never parks a file."""

from __future__ import annotations

import json

import pyarrow as pa

from berlin_rentals.archive import SourceLine
from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.synthetic import read_sample_records, zip_lines
from berlin_rentals.transform import transform_lines


def lines(records: list[dict], member: str = "batch.json") -> list[SourceLine]:
    return [SourceLine(member, n, json.dumps(r).encode()) for n, r in enumerate(records, start=1)]


def sample(n: int = 5) -> list[dict]:
    return [json.loads(json.dumps(r)) for r in read_sample_records()[:n]]


def test_a_value_longer_than_its_column_rejects_its_listing_naming_member_line_and_column():
    from berlin_rentals.warehouse.fit import fit_batch

    records = sample()
    records[2]["data"]["realEstate_heatingType"] = "X" * 100
    records[3]["data"]["realEstate_condition"] = "ü" * 40  # 40 characters, 80 bytes: Redshift counts bytes
    batch = transform_lines(lines(records))
    assert batch.stats.listings == 5  # the transform itself does not know the warehouse's limits
    fitted = fit_batch(batch)
    assert fitted.stats.listings == fitted.rows("fact_flats") == fitted.rows("flat_snapshots") == 3
    assert fitted.stats.rejected == 2 and fitted.stats.rejected_by_reason == {"value_too_long": 2}
    rejected = fitted.tables["rejected_records"].to_pylist()
    assert [(r["member"], r["line_number"]) for r in rejected] == [("batch.json", 3), ("batch.json", 4)]
    assert rejected[0]["reason"].startswith("batch.json line 3: value_too_long: ")
    assert "heating_type" in rejected[0]["reason"] and "realEstate_heatingType" in rejected[0]["reason"]
    assert "100 bytes" in rejected[0]["reason"] and "64" in rejected[0]["reason"]
    assert "condition" in rejected[1]["reason"] and "80 bytes" in rejected[1]["reason"]
    rejected_ids = {int(records[i]["data"]["id"]) for i in (2, 3)}
    assert not rejected_ids & set(fitted.tables["fact_flats"].column("listing_id").to_pylist())
    # Nothing of a rejected listing reaches the dimensions either (only a listing that fits does).
    kept_addresses = set(fitted.tables["fact_flats"].column("address_id").to_pylist())
    assert set(fitted.tables["dim_address"].column("address_id").to_pylist()) == kept_addresses
    assert batch.stats.listings == 5 and batch.rows("fact_flats") == 5  # pure: the input is unchanged


def test_every_staged_value_fits_the_model_after_the_fit():
    """Checked against the model's own SQL types, for each staged table and column."""
    import sqlalchemy as sa

    from berlin_rentals.warehouse.fit import fit_batch

    records = sample()
    records[0]["data"]["realEstate_petsAllowed"] = "NEGOTIABLE" * 10
    records[1]["data"]["realEstate_state"] = "ok\x00"  # PostgreSQL cannot store a NUL
    long_member = "m" * 2000 + ".json"
    batch = fit_batch(transform_lines(lines(records, member=long_member) + [SourceLine(long_member, 9, b"{")]))
    for name, cols in STAGED_TABLES.items():
        table = batch.tables[name]
        for col in cols:
            kind = col.sql()
            for value in table.column(col.name).to_pylist():
                if value is None:
                    assert col.nullable, (name, col.name)
                elif isinstance(kind, sa.String) and kind.length:
                    assert len(value.encode()) <= kind.length and "\x00" not in value, (name, col.name)
    assert batch.stats.rejected == 3  # two listings and the broken line
    members = set(batch.tables["rejected_records"].column("member").to_pylist())
    assert len(members) == 1 and len(next(iter(members)).encode()) <= 1024


def test_a_batch_that_fits_is_returned_as_it_is():
    from berlin_rentals.warehouse.fit import fit_batch

    batch = transform_lines(lines(sample()))
    assert fit_batch(batch) is batch


def test_a_100_character_heating_type_rejects_that_line_and_the_file_loads(settings, s3):
    from flows.ingest import ingest_file
    from tests.helpers import query, upload

    records = sample(11)
    records[4]["data"]["realEstate_heatingType"] = "H" * 100
    body = zip_lines("odd.json", [json.dumps(r).encode() for r in records])
    key, etag = upload(s3, settings, "immobilienscout24_berlin_20190113_19.zip", body)
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    result = state.result(raise_on_failure=False)
    assert state.is_completed(), result
    assert (result["status"], result["listings"], result["rejected"]) == ("loaded", 10, 1)
    ledger = query(settings, "SELECT status, rejected_count, listings FROM {schema}.load_ledger")[0]
    assert tuple(ledger) == ("loaded", 1, 10)
    (reject,) = query(settings, "SELECT member, line_number, reason FROM {schema}.rejected_records")
    assert (reject.member, reject.line_number) == ("odd.json", 5)
    assert "value_too_long" in reject.reason and "heating_type" in reject.reason


def test_rows_that_fit_keep_arrow_types():
    from berlin_rentals.model import arrow_schema
    from berlin_rentals.warehouse.fit import fit_batch

    records = sample()
    records[0]["data"]["realEstate_heatingType"] = "X" * 65
    fitted = fit_batch(transform_lines(lines(records)))
    for name, table in fitted.tables.items():
        assert table.schema.equals(arrow_schema(name)), name
    assert isinstance(fitted.tables["fact_flats"], pa.Table)


def test_a_replayed_line_the_warehouse_cannot_hold_stays_rejected():
    """The replay transforms rejected lines again: what it would load must fit as a load's batch does."""
    from berlin_rentals.replay import RecordedReject, transform_rejected

    records = sample(2)
    records[1]["data"]["realEstate_heatingType"] = "H" * 100
    reason = "batch.json line 2: value_too_long: `heating_type` (source `realEstate_heatingType`) is 100 bytes"
    replay = transform_rejected(lines(records)[1:], [RecordedReject("batch.json", 2, reason)], None)
    assert replay.recovered == [] and list(replay.still_rejected) == [("batch.json", 2)]
    assert replay.batch.rows("fact_flats") == 0
