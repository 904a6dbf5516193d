"""One decode a line whatever keys it carries (berlin_rentals/decode.py LineDecoder): every real listing has
`data` keys the model does not read, and each such line used to be decoded three times and typed field by
field. The unknown keys are still found and counted, and what a line yields or why it is refused is the same."""

from __future__ import annotations

import json

import pytest

import berlin_rentals.decode as decode
from berlin_rentals.archive import SourceLine
from berlin_rentals.synthetic import read_sample_records
from berlin_rentals.transform import transform_lines
from berlin_rentals.values import RejectedLine

REAL_UNKNOWN = ("listingType", "contactDetails_portraitUrl", "propertyDeveloper", "showcasePlacementColor")


def _line(record: dict, **extra) -> bytes:
    data = dict(record["data"], **extra)
    return json.dumps({"ok": True, "data": data}).encode()


def _lines() -> list[bytes]:
    """The sample's listings four times over, each with some of the unknown keys real batches carry."""
    lines = []
    for n, record in enumerate(read_sample_records() * 4):
        extra = {key: "x" if key != "propertyDeveloper" else None for key in REAL_UNKNOWN[: 1 + n % 4]}
        lines.append(_line(record, id=str(80_000_000 + n), **extra))
    return lines


@pytest.fixture
def slow_decodes(monkeypatch) -> list[bytes]:
    """The lines that took the three-decode path (decode_line), as they come."""
    seen: list[bytes] = []
    three_decodes = decode.decode_line

    def counted(raw: bytes):
        seen.append(raw)
        return three_decodes(raw)

    monkeypatch.setattr(decode, "decode_line", counted)
    return seen


def test_after_its_first_line_with_a_key_a_file_decodes_each_line_once_and_counts_every_key(slow_decodes):
    lines = _lines()
    decoder = decode.LineDecoder()
    results = [decoder.decode(raw) for raw in lines]
    # One line for each new key (the first line has one, the second a second, ...): 4 of 44 lines.
    assert len(slow_decodes) == len(REAL_UNKNOWN)
    for raw, (listing, unknown) in zip(lines, results, strict=True):
        data = json.loads(raw)["data"]
        assert unknown == tuple(sorted(key for key in REAL_UNKNOWN if key in data))  # a null value counts too
        assert listing.id == data["id"] and float(listing.base_rent) == data["realEstate_baseRent"]


def test_the_transform_counts_the_same_unknown_keys_and_yields_the_same_rows_as_line_by_line():
    lines = _lines()
    whole = transform_lines(SourceLine("m.json", n, raw) for n, raw in enumerate(lines, 1))
    assert whole.stats.rejected == 0
    assert dict(whole.stats.unknown_fields) == {key: 44 - 11 * i for i, key in enumerate(REAL_UNKNOWN)}
    apart = [transform_lines([SourceLine("m.json", n, raw)]) for n, raw in enumerate(lines, 1)]
    assert sum(b.tables["fact_flats"].num_rows for b in apart) == whole.tables["fact_flats"].num_rows == 44


def test_a_learned_file_still_reads_sentinels_as_null_and_refuses_a_bad_value_by_its_field():
    record = read_sample_records()[0]
    decoder = decode.LineDecoder()
    decoder.decode(_line(record, listingType="XL"))  # learned
    listing, unknown = decoder.decode(_line(record, listingType="XL", realEstate_baseRent="NO_INFORMATION"))
    assert listing.base_rent is None and unknown == ("listingType",)
    with pytest.raises(RejectedLine) as refused:
        decoder.decode(_line(record, listingType="XL", realEstate_baseRent="a lot"))
    assert refused.value.code == "invalid_value" and "realEstate_baseRent" in str(refused.value)
    with pytest.raises(RejectedLine) as refused:
        decoder.decode(b'{"ok": true, "data": {"listingType": "XL"')
    assert refused.value.code == "not_json"


def test_a_file_of_a_new_key_a_line_stops_learning_and_still_counts_each(slow_decodes):
    record = read_sample_records()[0]
    decoder = decode.LineDecoder()
    count = decode.MAX_LEARNED_KEYS + 20
    results = [decoder.decode(_line(record, **{f"key_{n:03d}": n})) for n in range(count)]
    assert [unknown for _, unknown in results] == [(f"key_{n:03d}",) for n in range(count)]
    assert len(slow_decodes) == count  # every line was new; past the cap nothing more is declared
    assert len(decoder._learned) == decode.MAX_LEARNED_KEYS
