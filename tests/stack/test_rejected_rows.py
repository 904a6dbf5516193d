"""A file's rejected lines in the warehouse: a file that is mostly garbage parked by default (bounded rows and
an exact count by reason, stack-free: tests/unit/test_rejected_rows.py) (issue #23: a 2,161-byte zip gave 1,048,576 rows of rejected_records and a peak
RSS of 771 MB, and with ETL_MAX_REJECT_RATIO unset they all loaded)."""

from __future__ import annotations

import pytest

from berlin_rentals.synthetic import batch_name, read_sample_records, zip_lines
from tests.unit.test_rejected_rows import tiny_bomb


@pytest.mark.stack
def test_a_file_mostly_garbage_is_parked_by_default_and_one_below_the_ratio_loads_its_counts(settings, s3):
    from flows.ingest import ingest_file
    from tests.helpers import query, upload

    key, etag = upload(s3, settings, batch_name_for(3) + ".zip", tiny_bomb(5_000))
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_failed() and "ETL_MAX_REJECT_RATIO=0.5" in state.message
    ledger = query(
        settings,
        "SELECT status, records_read, rejected_count, rejected_by_reason FROM {schema}.load_ledger WHERE key = :k",
        k=key,
    )
    # Parked for its rejects, with the counts that parked it: the ledger says why without a rerun.
    assert [tuple(r) for r in ledger] == [("parked", 5_000, 5_000, "not_json=5000")]

    good = [json_line(r) for r in read_sample_records()]  # 3,300 good lines and 3,000 bad: 48% rejected
    key, etag = upload(s3, settings, batch_name_for(4) + ".zip", zip_lines("b.json", good * 300 + [b"x"] * 3000))
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded", state.message
    row = query(
        settings,
        "SELECT rejected_count, rejected_by_reason FROM {schema}.load_ledger WHERE key = :k",
        k=key,
    )[0]
    assert (row.rejected_count, row.rejected_by_reason) == (3000, "not_json=3000")
    kept = query(settings, "SELECT COUNT(*) AS n FROM {schema}.rejected_records WHERE source_key = :k", k=key)
    assert kept[0].n == 1000


def batch_name_for(hour: int) -> str:
    from datetime import datetime

    return batch_name(datetime(2042, 1, 1, hour))


def json_line(record: dict) -> bytes:
    import json

    return json.dumps(record).encode()
