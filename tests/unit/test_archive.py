"""Reading batch zips: members, lines, and the archive-level failures that fail a file."""

from __future__ import annotations

import io
import zipfile

import pytest

from berlin_rentals.archive import BadArchive, iter_lines


def make_zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def test_sample_has_eleven_lines_numbered_from_one(sample_zip):
    lines = list(iter_lines(sample_zip, "sample"))
    assert len(lines) == 11
    assert [line.line_number for line in lines] == list(range(1, 12))
    assert all(line.raw.startswith(b'{"ok"') for line in lines)


def test_blank_lines_and_crlf_are_skipped_but_numbering_follows_the_file():
    body = b'{"a":1}\r\n\r\n   \n{"b":2}'
    lines = list(iter_lines(make_zip({"x.json": body}), "f.zip"))
    assert [(line.line_number, line.raw) for line in lines] == [(1, b'{"a":1}'), (4, b'{"b":2}')]


def test_every_json_member_is_read_in_order_and_other_members_ignored():
    data = make_zip({"a.json": b"1\n2\n", "readme.txt": b"x\n", "b.jsonl": b"3\n", "__MACOSX/._a.json": b"junk"})
    lines = list(iter_lines(data, "f.zip"))
    assert [(line.member, line.raw) for line in lines] == [("a.json", b"1"), ("a.json", b"2"), ("b.jsonl", b"3")]


def test_lines_spanning_read_chunks_are_reassembled():
    long_line = b'{"k":"' + b"x" * (3 << 20) + b'"}'
    data = make_zip({"a.json": b"first\n" + long_line + b"\nlast\n"})
    lines = list(iter_lines(data, "f.zip"))
    assert [len(line.raw) for line in lines] == [5, len(long_line), 4]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"this is not a zip", "not a zip archive"),
        (make_zip({}), "the zip archive is empty"),
        (make_zip({"notes.txt": b"hello"}), "no JSON-lines member"),
        (make_zip({"a.json": b'{"ok":true}\n' * 5000})[:-200], "f.zip"),
        (b"", "not a zip archive"),
    ],
    ids=["not-zip", "empty-zip", "no-json-member", "truncated", "zero-bytes"],
)
def test_unusable_archives_fail_the_file_with_its_name(data, message):
    with pytest.raises(BadArchive, match=message) as info:
        list(iter_lines(data, "f.zip"))
    assert "f.zip" in str(info.value)


def test_truncated_member_data_is_a_bad_archive():
    data = bytearray(make_zip({"a.json": b'{"ok":true,"data":{}}\n' * 20000}))
    # Corrupt the compressed stream itself, keeping the central directory intact.
    for i in range(200, 400):
        data[i] = 0
    with pytest.raises(BadArchive, match="corrupt or truncated"):
        list(iter_lines(bytes(data), "f.zip"))


def test_a_member_inflating_past_the_limit_is_refused_as_a_zip_bomb():
    bomb = make_zip({"a.json": b"0" * (8 << 20)})
    assert len(bomb) < 100_000
    with pytest.raises(BadArchive, match="zip bomb"):
        list(iter_lines(bomb, "bomb.zip", max_member_bytes=4 << 20))


def test_a_zip_with_two_members_of_one_name_is_refused_naming_it():
    """Lines are keyed by (member, line number): two members called batch.json would collide in
    rejected_records (its primary key) and in a replay, which reads a member by its name."""
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as archive:
        warnings.simplefilter("ignore", UserWarning)
        archive.writestr("readme.txt", b"x")
        archive.writestr("batch.json", b"not json\n")
        archive.writestr("other.json", b"{}\n")
        archive.writestr("batch.json", b"not json either\n")
    with pytest.raises(BadArchive, match=r"f.zip: member name batch.json appears 2 times"):
        list(iter_lines(buffer.getvalue(), "f.zip"))


def test_a_file_inflating_far_past_its_compressed_size_is_refused_as_a_zip_bomb(tmp_path):
    """One line of 40 MiB from a zip of 40 KB (1000:1): under the member limit, it used to load as a file
    of one rejected line. Real batches compress about 9:1; the default ratio allows 100:1."""
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(make_zip({"a.json": b"x" * (40 << 20)}))
    assert bomb.stat().st_size < 100_000
    with pytest.raises(
        BadArchive, match=r"bomb.zip: its members inflate past 16777216 bytes in all \(the limit: 100:1 .*zip bomb"
    ):
        list(iter_lines(bomb, "bomb.zip"))  # the defaults, as a run without settings has them
    with pytest.raises(BadArchive, match="zip bomb"):
        list(iter_lines(bomb.read_bytes(), "bomb.zip"))  # the same from memory


def test_a_small_file_may_inflate_more_than_the_ratio_up_to_a_floor():
    """A short hour of a few listings with long repetitive texts compresses well beyond 100:1: that alone
    is no bomb, so the ratio applies only past a floor of 16 MiB."""
    data = make_zip({"a.json": b"x" * (6 << 20) + b"\n"})
    assert len(data) * 100 < 6 << 20
    assert [len(line.raw) for line in iter_lines(data, "f.zip")] == [6 << 20]


def test_the_members_of_a_file_count_together_against_its_total():
    line = b"1" * 1023 + b"\n"
    data = make_zip({"a.json": line * 3072, "b.json": line * 3072}, compression=zipfile.ZIP_STORED)  # 3 MiB each
    assert len(list(iter_lines(data, "f.zip", max_member_bytes=4 << 20))) == 6144  # each member is under it
    with pytest.raises(
        BadArchive, match=r"f.zip: its members inflate past 4194304 bytes in all \(the limit: ETL_MAX_FILE_BYTES"
    ):
        list(iter_lines(data, "f.zip", max_member_bytes=4 << 20, max_file_bytes=4 << 20))


def test_an_overlong_line_is_cut_and_flagged_not_held_whole():
    data = make_zip({"a.json": b"ok\n" + b"y" * 5000 + b"\nok\n"})
    lines = list(iter_lines(data, "f.zip", max_line_bytes=1000))
    assert [(len(line.raw), line.too_long) for line in lines] == [(2, False), (1000, True), (2, False)]


class TailReads(io.BytesIO):
    """The archive's bytes, noting the lowest offset any read started at."""

    lowest = None

    def read(self, size=-1):
        self.lowest = self.tell() if self.lowest is None else min(self.lowest, self.tell())
        return super().read(size)


def _empty_members(count: int) -> bytes:
    return make_zip({f"m{i}.json": b"" for i in range(count)}, compression=zipfile.ZIP_STORED)


def test_an_archive_of_more_members_than_allowed_is_refused_from_its_end_record_alone():
    """600,000 empty members were read for 40 s (666 MB) to "ok, 0 lines": the count is refused from the
    end record, in the archive's last 64 KiB, before zipfile reads (and allocates) the central directory."""
    data = TailReads(_empty_members(600))
    with pytest.raises(BadArchive, match=r"f.zip: 600 members in the archive, more than 500 \(ETL_MAX_MEMBERS\)"):
        list(iter_lines(data, "f.zip", max_members=500))
    assert data.lowest >= len(data.getvalue()) - (1 << 16) - 22, "read before the end record"
    assert len(list(iter_lines(_empty_members(500), "f.zip", max_members=500))) == 0  # at the cap: read


def _end_record(data: bytes) -> int:
    return data.rindex(b"PK\x05\x06")


def test_a_central_directory_past_its_size_cap_is_refused_before_it_is_read():
    """zipfile walks the directory by its stated size, not by the entry count: an end record that states
    few entries over a long directory is refused by the size, before a single entry is parsed."""
    data = bytearray(_empty_members(600))
    end = _end_record(data)
    data[end + 8 : end + 12] = (2).to_bytes(2, "little") * 2  # "2 entries", on this disk and in all
    directory = int.from_bytes(data[end + 16 : end + 20], "little")
    data[directory : directory + 4] = b"XXXX"  # a parse would fail on the first entry's signature
    stream = TailReads(bytes(data))
    with pytest.raises(BadArchive, match=r"f.zip: its central directory takes \d+ bytes, more than 25600 bytes"):
        list(iter_lines(stream, "f.zip", max_members=50))
    assert stream.lowest >= len(data) - (1 << 16) - 22


def test_an_end_record_that_understates_the_members_is_refused_once_they_are_counted():
    data = bytearray(_empty_members(60))
    end = _end_record(data)
    data[end + 8 : end + 12] = (2).to_bytes(2, "little") * 2
    with pytest.raises(BadArchive, match=r"f.zip: 60 members in the archive, more than 50"):
        list(iter_lines(bytes(data), "f.zip", max_members=50))


def _utf8_flagged_zip() -> bytes:
    """One member named batch_ä.json: zipfile sets the UTF-8 flag (bit 11) for a name that is not ASCII."""
    data = make_zip({"batch_ä.json": b'{"ok": true}\n'}, compression=zipfile.ZIP_STORED)
    assert data.count("ä".encode()) == 2  # the local header's name and the central directory's
    return data


@pytest.mark.parametrize("where", ["both", "local-header-only"])
def test_a_member_name_that_is_not_utf8_though_flagged_so_is_a_bad_archive(where):
    """zipfile decodes a flagged name as UTF-8: 0xff raised UnicodeDecodeError, parked as an unexpected
    error with its traceback; in the central directory when the zip is opened, in the local header when
    the member is."""
    count = 2 if where == "both" else 1
    data = _utf8_flagged_zip().replace("ä".encode(), b"\xff\xfe", count)
    with pytest.raises(BadArchive, match=r"^f.zip: .*member name .*not UTF-8") as refused:
        list(iter_lines(data, "f.zip"))
    assert "\n" not in str(refused.value)


def test_a_member_needing_a_newer_zip_version_is_a_bad_archive():
    """zipfile raises NotImplementedError while it reads the directory of such a member (a version past 6.3)."""
    data = bytearray(_utf8_flagged_zip())
    entry = data.index(b"PK\x01\x02")
    data[entry + 6 : entry + 8] = (99).to_bytes(2, "little")  # version needed to extract: 9.9
    with pytest.raises(BadArchive, match=r"f.zip: .*zip file version 9.9"):
        list(iter_lines(bytes(data), "f.zip"))
