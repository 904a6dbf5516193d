"""Every staged value fits its warehouse column, or its listing is rejected: one odd value never parks a file."""

from __future__ import annotations

import json

from berlin_rentals.synthetic import zip_lines
from tests.unit.test_fit import sample


def test_a_100_character_heating_type_is_capped_and_the_whole_file_loads(settings, s3):
    from flows.ingest import ingest_file
    from tests.helpers import query, upload

    records = sample(11)
    records[4]["data"]["realEstate_heatingType"] = "H" * 100
    body = zip_lines("odd.json", [json.dumps(r).encode() for r in records])
    key, etag = upload(s3, settings, "immobilienscout24_berlin_20190113_19.zip", body)
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    result = state.result(raise_on_failure=False)
    assert state.is_completed(), result
    assert (result["status"], result["listings"], result["rejected"]) == ("loaded", 11, 0)
    ledger = query(settings, "SELECT status, rejected_count, listings FROM {schema}.load_ledger")[0]
    assert tuple(ledger) == ("loaded", 0, 11)
    listing = int(records[4]["data"]["id"])
    (flat,) = query(settings, "SELECT heating_type FROM {schema}.fact_flats WHERE listing_id = :id", id=listing)
    assert flat.heating_type == "H" * 64
