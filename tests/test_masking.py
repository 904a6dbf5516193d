"""Masking of contact persons' personal data by a setting (ETL_MASK_PERSONAL_DATA + ETL_MASK_SALT)."""

from __future__ import annotations

import pytest

from berlin_rentals.archive import SourceLine, iter_lines
from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.masking import PERSONAL_COLUMNS, Masker
from berlin_rentals.source import SourceObject
from berlin_rentals.transform import transform_lines
from tasks.transform import etag_cache_key

SALT = b"a-secret-salt-of-32-bytes-length"


def agencies(batch) -> dict[str, dict]:
    return {row["customer_id"]: row for row in batch.tables["dim_agency"].to_pylist()}


def test_personal_columns_become_stable_salted_hashes_and_the_rest_stays(sample_zip):
    clear = agencies(transform_lines(iter_lines(sample_zip, "s.zip")))
    masked = agencies(transform_lines(iter_lines(sample_zip, "s.zip"), masker=Masker(SALT)))
    again = agencies(transform_lines(iter_lines(sample_zip, "s.zip"), masker=Masker(SALT)))
    other_salt = agencies(transform_lines(iter_lines(sample_zip, "s.zip"), masker=Masker(b"another-secret-salt-16+")))
    assert masked.keys() == clear.keys()
    # Not vacuous: the sample has contacts in every personal column, so there is something to mask.
    for column in PERSONAL_COLUMNS:
        assert any(row[column] for row in clear.values()), f"the sample has no {column} to mask"
    for customer, row in masked.items():
        for column in PERSONAL_COLUMNS:
            if clear[customer][column] is None:
                assert row[column] is None
            else:
                assert row[column].startswith("h:") and row[column] != clear[customer][column]
                assert clear[customer][column] not in row[column]
                assert row[column] == again[customer][column] != other_salt[customer][column]
        for column in ("company", "customer_id", "salutation", "phone_area_code", "agency_id"):
            assert row[column] == clear[customer][column]


def test_masked_batches_keep_no_raw_lines_of_rejects():
    lines = [SourceLine("m.json", 1, b'{"ok": true, "data": {"id": "x", "contactDetails_email": "a@b.c"}}')]
    rejected = transform_lines(lines, masker=Masker(SALT)).tables["rejected_records"].to_pylist()
    assert rejected[0]["raw_line"] is None and rejected[0]["line_number"] == 1
    assert "a@b.c" not in rejected[0]["reason"]


def test_masking_needs_a_salt_and_a_short_salt_is_refused():
    env = {"WAREHOUSE_URL": "postgresql://x", "ETL_MASK_PERSONAL_DATA": "true"}
    with pytest.raises(ConfigError, match="ETL_MASK_SALT"):
        Settings.from_env(env).masker()
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Settings.from_env(env | {"ETL_MASK_SALT": "short"}).masker()
    assert Settings.from_env({"WAREHOUSE_URL": "postgresql://x"}).masker() is None
    assert "salt" not in repr(Settings.from_env(env | {"ETL_MASK_SALT": SALT.decode()}))


def test_the_transform_cache_key_changes_with_masking():
    source = SourceObject("b", "raw/x.zip", "e" * 32, 1, None)
    keys = {
        etag_cache_key(None, {"settings": Settings.from_env(env), "source": source})
        for env in (
            {"WAREHOUSE_URL": "postgresql://x"},
            {"WAREHOUSE_URL": "postgresql://x", "ETL_MASK_PERSONAL_DATA": "1", "ETL_MASK_SALT": SALT.decode()},
            {"WAREHOUSE_URL": "postgresql://x", "ETL_MASK_PERSONAL_DATA": "1", "ETL_MASK_SALT": "z" * 20},
        )
    }
    assert len(keys) == 3 and all(k.endswith("e" * 32) for k in keys)
