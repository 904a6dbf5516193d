"""Odd but loadable files through the real ingest flow: flagged values, unknown fields, a name far in
the future, a key with spaces and non-ASCII, and a warehouse made before the model gained columns."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from berlin_rentals.synthetic import read_sample_records, zip_lines
from berlin_rentals.warehouse.ddl import create_warehouse
from flows.ingest import ingest_file
from tests.helpers import artifacts_of, query, scalar, upload


def _sample_lines(**changes_of_56906504) -> list[bytes]:
    lines = []
    for record in read_sample_records():
        if record["data"]["id"] == "56906504":
            record = {**record, "data": {**record["data"], **changes_of_56906504}}
        lines.append(json.dumps(record, ensure_ascii=False).encode())
    return lines


def _summary_of(flow_run_id) -> str:
    deadline = time.monotonic() + 15
    while True:  # the API may index artifacts a moment after the run returns
        found = [a.data for a in artifacts_of(flow_run_id) if a.key and a.key.startswith("summary-")]
        if found or time.monotonic() > deadline:
            assert found, "no summary artifact"
            return found[0]
        time.sleep(0.5)


def test_flags_unknown_fields_and_a_future_name_load_and_are_counted_in_the_ledger(settings, s3):
    lines = _sample_lines(realEstate_baseRent=-450, realEstate_livingSpace=0.4, brandNewField="x")
    key, etag = upload(s3, settings, "immobilienscout24_berlin_20310113_15.zip", zip_lines("b.json", lines))
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed(), state.result(raise_on_failure=False)

    assert scalar(settings, "SELECT quality_flags FROM {schema}.fact_flats WHERE listing_id = 56906504") == (
        "base_rent_negative,living_space_implausible"
    )
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.fact_flats WHERE quality_flags IS NULL") == 10
    assert scalar(settings, "SELECT quality_flags FROM {schema}.flat_snapshots WHERE listing_id = 56906504") == (
        "base_rent_negative,living_space_implausible"
    )
    ledger = query(
        settings,
        """SELECT status, flagged_count, unknown_field_count, batch_hour_source,
                                       EXTRACT(YEAR FROM batch_hour) AS year FROM {schema}.load_ledger""",
    )[0]
    assert (ledger.status, ledger.flagged_count, ledger.unknown_field_count) == ("loaded", 1, 1)
    assert (ledger.batch_hour_source, int(ledger.year)) == ("name_in_future", 2031)
    summary = _summary_of(state.state_details.flow_run_id)
    assert "quality flags (base_rent_negative: 1, living_space_implausible: 1)" in summary
    assert "`brandNewField` (1)" in summary and "**flag:**" in summary


def test_a_key_with_spaces_and_non_ascii_loads_under_its_exact_name(settings, s3, sample_zip):
    name = "Berlin Mitte – März+Kopie/immobilienscout24_berlin_20190113_15 (1).zip"
    key, etag = upload(s3, settings, name, sample_zip.read_bytes())
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed(), state.result(raise_on_failure=False)
    assert scalar(settings, "SELECT COUNT(*) FROM {schema}.flat_snapshots WHERE source_key = :k", k=key) == 11
    assert query(settings, "SELECT key, status FROM {schema}.load_ledger") == [(key, "loaded")]


def test_a_warehouse_made_before_the_model_gained_columns_gets_them_added(settings):
    schema = settings.warehouse_schema
    engine = sa.create_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {schema}.fact_flats DROP COLUMN quality_flags"))
        conn.execute(sa.text(f"ALTER TABLE {schema}.load_ledger DROP COLUMN unknown_field_count"))
    engine.dispose()
    added = create_warehouse(settings.warehouse_url, schema)
    assert sorted(added) == ["fact_flats.quality_flags", "load_ledger.unknown_field_count"]
    assert create_warehouse(settings.warehouse_url, schema) == []  # idempotent
    columns = {
        r.column_name
        for r in query(
            settings,
            """SELECT column_name FROM information_schema.columns
                                                        WHERE table_schema = :s AND table_name = 'fact_flats'""",
            s=schema,
        )
    }
    assert "quality_flags" in columns
