"""A backfill larger than ETL_FANOUT_FILES goes out as runs of the catch-up deployment over a share of the files
each, on the work pool, which the catch-up waits for and reports on: here two runs on the local worker, through
the real Prefect server (prefect.yaml deployed), loading into the stack's own schema as the worker's
environment says (tests/stack/test_fan_out.py, tests/e2e/test_fan_out.py). A share is the catch-up over a given
list: checked file by file, keyed by its files; here the check, stack-free."""

from __future__ import annotations

import pytest

from berlin_rentals.shares import raw_objects
from berlin_rentals.source import InvalidSource


def test_each_file_of_a_share_is_checked_on_its_own_and_a_bad_one_is_refused_with_its_reason():
    good = {
        "key": "raw/x/immobilienscout24_berlin_20190113_15.zip",
        "etag": "a" * 32,
        "last_modified": "2019-01-13T15:01:00+00:00",
    }
    (checked,), refused = raw_objects([good], "raw/")
    assert refused == []
    assert (checked.key, checked.etag, checked.size) == (good["key"], "a" * 32, 0)
    assert checked.last_modified.isoformat() == good["last_modified"]
    bad = [
        good | {"key": "other/immobilienscout24_berlin_20190113_15.zip"},
        good | {"key": "raw/../secrets.zip"},
        good | {"etag": "not-an-etag"},
        {"key": good["key"], "etag": good["etag"]},
        good | {"last_modified": 12},
        good | {"size": "1e400"},
        "raw/x/a.zip",
        None,
    ]
    other = good | {"key": "raw/x/immobilienscout24_berlin_20190113_16.zip"}
    objects, refused = raw_objects([*bad[:4], other, *bad[4:]], "raw/")
    assert [o.key for o in objects] == [other["key"]]
    assert len(refused) == len(bad) and all(why for _, why in refused)
    assert "outside the raw prefix" in refused[0][1] and "relative path segment" in refused[1][1]
    with pytest.raises(InvalidSource):
        raw_objects({"key": good["key"]}, "raw/")
