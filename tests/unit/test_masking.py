"""Masking of contact persons' personal data by a setting (ETL_MASK_PERSONAL_DATA + ETL_MASK_SALT)."""

from __future__ import annotations

import re

import pytest

from berlin_rentals.archive import SourceLine, iter_lines
from berlin_rentals.config import ConfigError, Settings
from berlin_rentals.masking import PERSONAL_COLUMNS, Masker
from berlin_rentals.source import SourceObject
from berlin_rentals.transform import transform_lines
from tasks.transform import etag_cache_key

SALT = b"5c0e9f3a71d24b86a9e07c3d1f58b2e4"  # as `openssl rand -hex 16` prints one
OTHER_SALT = b"e41b7d09a3c62f58d0b9e7143a6c8f25"


def agencies(batch) -> dict[str, dict]:
    return {row["customer_id"]: row for row in batch.tables["dim_agency"].to_pylist()}


def test_personal_columns_become_stable_salted_hashes_and_the_rest_stays(sample_zip):
    clear = agencies(transform_lines(iter_lines(sample_zip, "s.zip")))
    masked = agencies(transform_lines(iter_lines(sample_zip, "s.zip"), masker=Masker(SALT, "2026-12")))
    again = agencies(transform_lines(iter_lines(sample_zip, "s.zip"), masker=Masker(SALT, "2026-12")))
    other_salt = agencies(transform_lines(iter_lines(sample_zip, "s.zip"), masker=Masker(OTHER_SALT, "2027-01")))
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
    rejected = transform_lines(lines, masker=Masker(SALT, "2026-12")).tables["rejected_records"].to_pylist()
    assert rejected[0]["raw_line"] is None and rejected[0]["line_number"] == 1
    assert "a@b.c" not in rejected[0]["reason"]


def test_masking_needs_a_salt_and_its_name():
    env = {"WAREHOUSE_URL": "postgresql://x", "ETL_MASK_PERSONAL_DATA": "true"}
    with pytest.raises(ConfigError, match="ETL_MASK_SALT"):
        Settings.from_env(env).masker()
    with pytest.raises(ConfigError, match="ETL_MASK_SALT_ID is not"):
        Settings.from_env(env | {"ETL_MASK_SALT": SALT.decode()}).masker()
    assert Settings.from_env({"WAREHOUSE_URL": "postgresql://x"}).masker() is None
    named = Settings.from_env(env | {"ETL_MASK_SALT": SALT.decode(), "ETL_MASK_SALT_ID": "2026-12"})
    assert named.masker().salt_id == "2026-12" and SALT.decode() not in repr(named) + repr(named.masker())


# Salts an attacker's first guesses find (a phrase, a placeholder, a pattern), each refused with why.
WEAK_SALTS = {
    "short": "fewer than 32",
    "a-secret-salt-of-32-bytes-length": "the word 'secret'",
    "berlin-rentals-production-2026-key": "the word 'berlin'",
    "changeme-changeme-changeme-changeme": "'changeme'",
    "my-Example-value-for-ETL-mask-2026": "the word 'Example'",
    "z" * 40: "1 distinct",
    "ab9xK2pQ" * 5: "one piece repeated",
    "fadedfacade0fadeddecade0facadefeed0ace": "6 distinct",
}


@pytest.mark.parametrize("salt, why", WEAK_SALTS.items())
def test_a_salt_a_guess_would_find_is_refused_with_its_reason(salt, why):
    env = {"WAREHOUSE_URL": "postgresql://x", "ETL_MASK_SALT": salt, "ETL_MASK_SALT_ID": "2026-12"}
    with pytest.raises(ConfigError, match=re.escape(why)) as refused:
        Settings.from_env(env).pseudonymizer()
    assert "openssl rand -hex 32" in str(refused.value) and salt not in str(refused.value)


def test_generated_salts_pass_and_the_name_must_be_a_name():
    import base64
    import random

    rng = random.Random(2026)  # generated as `openssl rand` would, but the same each run: never a flaky test
    for _ in range(300):
        for salt in (rng.randbytes(16).hex(), rng.randbytes(32).hex(), base64.urlsafe_b64encode(rng.randbytes(32))):
            salt = salt if isinstance(salt, bytes) else salt.encode()
            assert Masker(salt, "2026-12").salt_id == "2026-12", salt
    for bad in ("", "Has Space", "x" * 33, SALT.decode()[:8]):
        with pytest.raises(ValueError, match="ETL_MASK_SALT_ID"):
            Masker(SALT, bad)


def test_the_transform_cache_key_changes_with_masking():
    source = SourceObject("b", "raw/x.zip", "e" * 32, 1, None)
    keys = {
        etag_cache_key(None, {"settings": Settings.from_env(env), "source": source})
        for env in (
            {"WAREHOUSE_URL": "postgresql://x"},
            {"WAREHOUSE_URL": "postgresql://x", "ETL_MASK_PERSONAL_DATA": "1"}
            | {"ETL_MASK_SALT": SALT.decode(), "ETL_MASK_SALT_ID": "2026-12"},
            {"WAREHOUSE_URL": "postgresql://x", "ETL_MASK_PERSONAL_DATA": "1"}
            | {"ETL_MASK_SALT": OTHER_SALT.decode(), "ETL_MASK_SALT_ID": "2027-01"},
        )
    }
    assert len(keys) == 3 and all(k.endswith("e" * 32) for k in keys)
