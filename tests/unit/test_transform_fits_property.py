"""Property: whatever a record's mapped fields hold (any text, number, sentinel, list, or nothing), the
transform's output fits the DDL of both engines, and no listing is lost to it.

The DDL is the model's (berlin_rentals/model.py Col types, checked by berlin_rentals.warehouse.fit.misfits):
VARCHAR lengths in UTF-8 bytes as Redshift counts them (PostgreSQL counts characters, never more), no NUL
(PostgreSQL), NUMERIC precision, INTEGER range, NOT NULL. The transform alone must already fit: the fit
step after it then rejects nothing, so no value it lets through can make either engine refuse the file.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berlin_rentals.archive import SourceLine
from berlin_rentals.listing import FIELD_SOURCE_KEYS as _FIELDS
from berlin_rentals.listing import TYPED_FIELDS as _TYPED_FIELDS
from berlin_rentals.synthetic import read_sample_records
from berlin_rentals.transform import transform_lines
from berlin_rentals.values import SENTINELS
from berlin_rentals.warehouse.fit import fit_batch, misfits

BASE = read_sample_records()
# every field the model maps, but the three that identify and order a listing (their own tests cover them)
ORDERING = {"id", "modification", "realEstate_lastModificationDate"}
MAPPED = sorted(set(_FIELDS.values()) - ORDERING)
TYPED = sorted({_FIELDS[name] for name in _TYPED_FIELDS} - ORDERING)  # numbers and timestamps

utf8 = st.characters(codec="utf-8")
text = st.one_of(
    st.text(utf8, max_size=80),
    st.builds(lambda c, n: c * n, utf8, st.integers(0, 70_000)),  # past every cap, in 1-4 byte characters
)
number = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=9).map(str),
)
sentinel = st.sampled_from([*sorted(SENTINELS), " ", "\t"])
anything = st.one_of(text, number, sentinel, st.booleans(), st.none(), st.lists(st.one_of(text, number), max_size=3))


@st.composite
def records(draw) -> dict:
    data = dict(draw(st.sampled_from(BASE))["data"])
    for key in draw(st.lists(st.sampled_from(MAPPED), unique=True, max_size=len(MAPPED))):
        value = draw(anything)
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return {"ok": True, "data": data}


@st.composite
def sentinel_records(draw) -> dict:
    data = dict(draw(st.sampled_from(BASE))["data"])
    for key in draw(st.lists(st.sampled_from(TYPED), unique=True, min_size=1)):
        data[key] = draw(sentinel)
    return {"ok": True, "data": data}


def as_lines(batch: list[dict]) -> list[SourceLine]:
    # distinct ids: each record is its own listing, so every line ends as a listing or as a reject
    out = []
    for n, record in enumerate(batch, start=1):
        record["data"]["id"] = str(70_000_000 + n)
        out.append(SourceLine("gen.json", n, json.dumps(record, ensure_ascii=False).encode("utf-8")))
    return out


QUICK = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples on every run: the fast tier never flakes
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@QUICK
@given(st.lists(records(), min_size=1, max_size=4))
def test_any_values_in_the_mapped_fields_fit_the_ddl_of_both_engines(batch):
    lines = as_lines(batch)
    out = transform_lines(lines)
    assert misfits(out) == []
    assert fit_batch(out) is out  # nothing left to cap, no listing rejected for the warehouse's sake
    assert out.stats.listings + out.stats.rejected == len(lines)
    for reason in out.tables["rejected_records"].column("reason").to_pylist():
        assert reason.split(": ")[1] == "invalid_value", reason  # a value the model cannot type, named


@QUICK
@given(st.lists(sentinel_records(), min_size=1, max_size=4))
def test_sentinels_in_numbers_and_timestamps_never_reject_a_listing(batch):
    out = transform_lines(as_lines(batch))
    assert out.stats.rejected == 0, out.tables["rejected_records"].to_pylist()
    assert out.stats.listings == len(batch) and misfits(out) == []
