"""Every staged value fits its warehouse column, or its listing is rejected: one odd value never parks a file."""

from __future__ import annotations

import json

import pyarrow as pa

from berlin_rentals.archive import SourceLine
from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.synthetic import read_sample_records
from berlin_rentals.transform import transform_lines


def lines(records: list[dict], member: str = "batch.json") -> list[SourceLine]:
    return [SourceLine(member, n, json.dumps(r).encode()) for n, r in enumerate(records, start=1)]


def sample(n: int = 5) -> list[dict]:
    return [json.loads(json.dumps(r)) for r in read_sample_records()[:n]]


def _with_column(batch, table: str, column: str, values: dict[int, str]):
    """The batch with some rows' values of one column replaced: what a transform that forgot a cap would make."""
    from dataclasses import replace

    data = batch.tables[table]
    index = data.schema.get_field_index(column)
    new = [values.get(row, value) for row, value in enumerate(data.column(column).to_pylist())]
    tables = dict(batch.tables) | {table: data.set_column(index, data.schema.field(index), pa.array(new, pa.string()))}
    return replace(batch, tables=tables)


def test_the_transform_caps_an_enum_value_longer_than_its_column_and_the_listing_loads():
    from berlin_rentals.warehouse.fit import fit_batch

    records = sample()
    records[2]["data"]["realEstate_heatingType"] = "X" * 100
    records[3]["data"]["realEstate_condition"] = "ü" * 40  # 40 characters, 80 bytes: Redshift counts bytes
    batch = transform_lines(lines(records))
    facts = batch.tables["fact_flats"].to_pylist()
    assert (facts[2]["heating_type"], facts[3]["condition"]) == ("X" * 64, "ü" * 32)
    assert fit_batch(batch) is batch and batch.stats.rejected == 0


def test_a_value_longer_than_its_column_rejects_its_listing_naming_member_line_and_column():
    """The fit is the net under the transform: a value it would let through is refused per listing."""
    from berlin_rentals.warehouse.fit import fit_batch

    records = sample()
    batch = transform_lines(lines(records))
    batch = _with_column(batch, "fact_flats", "heating_type", {2: "X" * 100})
    batch = _with_column(batch, "fact_flats", "condition", {3: "ü" * 40})
    assert batch.stats.listings == 5
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
    assert fitted.variant == batch.variant


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
    assert batch.stats.rejected == 1  # the broken line: the long and the NUL value are the transform's to mend
    facts = batch.tables["fact_flats"].to_pylist()
    assert (facts[0]["pets_allowed"], facts[1]["state"], facts[1]["is_active"]) == (
        "NEGOTIABLE" * 6 + "NEGO",
        "ok",
        False,
    )
    members = set(batch.tables["rejected_records"].column("member").to_pylist())
    assert len(members) == 1 and len(next(iter(members)).encode()) <= 1024


def test_a_batch_that_fits_is_returned_as_it_is():
    from berlin_rentals.warehouse.fit import fit_batch

    batch = transform_lines(lines(sample()))
    assert fit_batch(batch) is batch


def test_rows_that_fit_keep_arrow_types():
    from berlin_rentals.model import arrow_schema
    from berlin_rentals.warehouse.fit import fit_batch

    records = sample()
    records[0]["data"]["realEstate_heatingType"] = "X" * 65
    fitted = fit_batch(transform_lines(lines(records)))
    for name, table in fitted.tables.items():
        assert table.schema.equals(arrow_schema(name)), name
    assert isinstance(fitted.tables["fact_flats"], pa.Table)


def test_a_line_an_earlier_release_rejected_as_too_long_is_recovered_by_a_replay():
    """The replay transforms rejected lines again with the current code, which caps what it once refused."""
    from berlin_rentals.replay_lines import RecordedReject, transform_rejected

    records = sample(2)
    records[1]["data"]["realEstate_heatingType"] = "H" * 100
    reason = "batch.json line 2: value_too_long: `heating_type` (source `realEstate_heatingType`) is 100 bytes"
    replay = transform_rejected(lines(records)[1:], [RecordedReject("batch.json", 2, reason)], None)
    assert replay.recovered == [("batch.json", 2)] and not replay.still_rejected
    assert replay.batch.tables["fact_flats"].column("heating_type").to_pylist() == ["H" * 64]
