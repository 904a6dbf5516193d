"""Stream the JSON-lines members of a batch zip, line by line, in bounded memory."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_CHUNK = 1 << 20


class BadArchive(ValueError):
    """The object is not a usable batch (not a zip, empty, truncated, a zip bomb). Terminal."""


# Real batches compress about 9:1. A file inflating past this many times its own size is refused as a
# bomb, though only past the floor: a short hour of repetitive texts can inflate well beyond 100:1.
DEFAULT_MAX_INFLATE_RATIO = 100.0
RATIO_FLOOR_BYTES = 16 << 20
DEFAULT_MAX_FILE_BYTES = 4 * 1024**3
# A real batch holds one member. zipfile reads the whole central directory into a list of ZipInfo
# objects before anything can be refused (600,000 empty members: 40 s and 666 MB for "0 lines"), so the
# count and the directory's size are read from the end record first. A member's directory entry is 46
# bytes plus its name, extra field and comment: 512 bytes each is a generous allowance.
DEFAULT_MAX_MEMBERS = 10_000
DIRECTORY_BYTES_PER_MEMBER = 512
_END_RECORD = struct.Struct("<4s4H2LH")  # signature, disks, entries here, entries in all, size, offset, comment
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 end record, disks
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")  # ..., entries here, entries in all, size, offset
_TAIL_BYTES = (1 << 16) + _END_RECORD.size  # the end record and its longest comment


class InflateBudget:
    """The bytes all members of one file may inflate to, counted as they are read (never from headers)."""

    def __init__(self, name: str, compressed_bytes: int, *, max_ratio: float, max_file_bytes: int) -> None:
        self.name = name
        by_ratio = max(int(max_ratio * compressed_bytes), RATIO_FLOOR_BYTES)
        self.limit = min(by_ratio, max_file_bytes)
        if by_ratio < max_file_bytes:
            self.why = f"{max_ratio:g}:1 of its {compressed_bytes} compressed bytes, ETL_MAX_INFLATE_RATIO"
        else:
            self.why = "ETL_MAX_FILE_BYTES"
        self.used = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise BadArchive(
                f"{self.name}: its members inflate past {self.limit} bytes in all (the limit: {self.why}); "
                "refused as a possible zip bomb"
            )


def _compressed_size(source: str | Path | BinaryIO) -> int:
    if isinstance(source, str | Path):
        return Path(source).stat().st_size
    position = source.tell()
    size = source.seek(0, io.SEEK_END)
    source.seek(position)
    return size


@dataclass(frozen=True, slots=True)
class SourceLine:
    member: str
    line_number: int  # 1-based within the member
    raw: bytes  # without the line break; b"" never reaches the transform
    too_long: bool = False


def _is_json_member(info: zipfile.ZipInfo) -> bool:
    name = info.filename
    return (
        not info.is_dir()
        and not name.startswith("__MACOSX/")
        and name.rsplit("/", 1)[-1][:1] != "."
        and name.lower().endswith(JSON_SUFFIXES)
    )


def json_members(archive: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    infos = archive.infolist()
    if not infos:
        raise BadArchive(f"{name}: the zip archive is empty")
    members = [info for info in infos if _is_json_member(info)]
    if not members:
        listed = ", ".join(info.filename for info in infos[:5])
        raise BadArchive(f"{name}: no JSON-lines member (.json/.jsonl/.ndjson) in the archive ({listed})")
    return members


def refuse_repeated_names(members: list[zipfile.ZipInfo], name: str) -> None:
    """A line is known by (member, line number) in rejected_records (its primary key) and to a replay, which
    opens a member by its name: two members of one name cannot be told apart, so the file is refused."""
    repeated = [(member, count) for member, count in Counter(m.filename for m in members).items() if count > 1]
    if repeated:
        names = ", ".join(f"{member} appears {count} times" for member, count in repeated)
        raise BadArchive(f"{name}: member name {names} in the archive; its lines could not be told apart")


def _directory_extent(stream: BinaryIO) -> tuple[int, int] | None:
    """(entries, central directory bytes) as the end record states them, from the archive's tail only;
    None when there is no end record (zipfile then says why the archive is not one)."""
    size = stream.seek(0, io.SEEK_END)
    start = max(0, size - _TAIL_BYTES)
    stream.seek(start)
    tail = stream.read(size - start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END_RECORD.size:
        return None
    *_, entries, directory_bytes, _offset, _comment = _END_RECORD.unpack_from(tail, at)
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        record_at = _ZIP64_LOCATOR.unpack_from(tail, locator)[2]
        stream.seek(record_at)
        record = stream.read(_ZIP64_END_RECORD.size)
        if len(record) == _ZIP64_END_RECORD.size and record[:4] == b"PK\x06\x06":
            entries, directory_bytes = _ZIP64_END_RECORD.unpack(record)[6:8]
    return entries, directory_bytes


def _refuse_too_many_members(stream: BinaryIO, name: str, max_members: int) -> None:
    extent = _directory_extent(stream)
    stream.seek(0)
    if extent is None:
        return
    entries, directory_bytes = extent
    if entries > max_members:
        raise BadArchive(f"{name}: {entries} members in the archive, more than {max_members} (ETL_MAX_MEMBERS)")
    if directory_bytes > max_members * DIRECTORY_BYTES_PER_MEMBER:
        raise BadArchive(
            f"{name}: its central directory takes {directory_bytes} bytes, more than "
            f"{max_members * DIRECTORY_BYTES_PER_MEMBER} bytes for {max_members} members (ETL_MAX_MEMBERS)"
        )


def open_archive(
    path_or_file: str | Path | BinaryIO, name: str, *, max_members: int = DEFAULT_MAX_MEMBERS
) -> zipfile.ZipFile:
    """The archive, refused as a BadArchive for any reason it cannot be read as a batch's: every caller
    (the ingest, a replay, one raw line) meets the same limits."""
    try:
        if isinstance(path_or_file, str | Path):
            with open(path_or_file, "rb") as stream:
                _refuse_too_many_members(stream, name, max_members)
        else:
            _refuse_too_many_members(path_or_file, name, max_members)
        archive = zipfile.ZipFile(path_or_file)
    except zipfile.BadZipFile as exc:
        raise BadArchive(f"{name}: not a zip archive ({exc})") from exc
    except (EOFError, OSError) as exc:
        raise BadArchive(f"{name}: unreadable zip archive ({exc})") from exc
    except UnicodeDecodeError as exc:
        # A name flagged UTF-8 (bit 11) that is not: zipfile decodes it while it reads the directory.
        raise BadArchive(f"{name}: a member name is flagged UTF-8 but is not UTF-8 ({exc.reason})") from None
    except NotImplementedError as exc:  # e.g. a member needing a newer zip version
        raise BadArchive(f"{name}: the archive cannot be read ({exc})") from None
    if len(archive.filelist) > max_members:  # an end record that understated them
        archive.close()
        raise BadArchive(
            f"{name}: {len(archive.filelist)} members in the archive, more than {max_members} (ETL_MAX_MEMBERS)"
        )
    return archive


def iter_member_lines(
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    name: str,
    *,
    max_member_bytes: int,
    max_line_bytes: int,
    budget: InflateBudget | None = None,
) -> Iterator[SourceLine]:
    """Yield the non-blank lines of one member.

    The inflated size is counted as we read, not trusted from the header, so a zip bomb is
    refused after `max_member_bytes` without ever holding more than one chunk plus one line.
    A line longer than `max_line_bytes` is yielded truncated with `too_long` set, so it can be
    rejected with its reason instead of exhausting memory.
    """
    try:
        with archive.open(member) as stream:
            chunks = _inflated_chunks(stream, member, name, max_member_bytes, budget)
            yield from _split_lines(chunks, member.filename, max_line_bytes)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise BadArchive(f"{name}: member {member.filename} is corrupt or truncated ({exc})") from exc
    except NotImplementedError as exc:  # unsupported compression or encryption
        raise BadArchive(f"{name}: member {member.filename} cannot be read ({exc})") from exc
    except UnicodeDecodeError as exc:  # the local header's copy of the name, flagged UTF-8 and not
        raise BadArchive(
            f"{name}: member {member.filename!r}: its member name in the local header is flagged UTF-8 "
            f"but is not UTF-8 ({exc.reason})"
        ) from None


def _inflated_chunks(
    stream: BinaryIO, member: zipfile.ZipInfo, name: str, max_member_bytes: int, budget: InflateBudget | None
) -> Iterator[bytes]:
    """The member's inflated bytes chunk by chunk, counted as they come (never the header's word)."""
    inflated = 0
    while chunk := stream.read(_CHUNK):
        inflated += len(chunk)
        if budget is not None:
            budget.take(len(chunk))
        if inflated > max_member_bytes:
            raise BadArchive(
                f"{name}: member {member.filename} inflates past {max_member_bytes} bytes; "
                "refused as a possible zip bomb (ETL_MAX_MEMBER_BYTES)"
            )
        yield chunk


def _split_lines(chunks: Iterator[bytes], member: str, max_line_bytes: int) -> Iterator[SourceLine]:
    """The non-blank lines of the chunks, numbered from 1; a line held across chunks never grows past
    `max_line_bytes` (the rest of it is dropped and the line is flagged too long)."""
    line_number = 0
    pending = bytearray()
    pending_too_long = False
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                pending_too_long = _hold(pending, chunk[start:], pending_too_long, max_line_bytes)
                break
            line_number += 1
            if pending or pending_too_long:
                too_long = _hold(pending, chunk[start:end], pending_too_long, max_line_bytes)
                raw = bytes(pending)
                pending.clear()
                pending_too_long = False
            else:
                raw, too_long = chunk[start:end], end - start > max_line_bytes
                if too_long:
                    raw = raw[:max_line_bytes]
            start = end + 1
            raw = raw.rstrip(b"\r")
            if raw.strip():
                yield SourceLine(member, line_number, raw, too_long)
    if pending.strip():
        yield SourceLine(member, line_number + 1, bytes(pending).rstrip(b"\r"), pending_too_long)


def _hold(pending: bytearray, piece: bytes, too_long: bool, max_line_bytes: int) -> bool:
    """Add a piece to the line held across chunks, cut at max_line_bytes; whether the line is too long now."""
    if too_long:
        return True
    pending += piece
    if len(pending) > max_line_bytes:
        del pending[max_line_bytes:]
        return True
    return False


def iter_lines(
    path_or_file: str | Path | BinaryIO | bytes,
    name: str,
    *,
    max_member_bytes: int = 4 * 1024**3,
    max_line_bytes: int = 64 * 1024**2,
    max_inflate_ratio: float = DEFAULT_MAX_INFLATE_RATIO,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Iterator[SourceLine]:
    """All non-blank lines of all JSON-lines members, in archive order.

    Besides each member's own limit, all members together may inflate to `max_inflate_ratio` times the
    object's size (past a floor) and to `max_file_bytes` at most: a bomb of one long line would otherwise
    pass as a file of one rejected line after inflating gigabytes.
    """
    if isinstance(path_or_file, bytes):
        path_or_file = io.BytesIO(path_or_file)
    budget = InflateBudget(
        name, _compressed_size(path_or_file), max_ratio=max_inflate_ratio, max_file_bytes=max_file_bytes
    )
    with open_archive(path_or_file, name, max_members=max_members) as archive:
        members = json_members(archive, name)
        refuse_repeated_names(members, name)
        for member in members:
            yield from iter_member_lines(
                archive, member, name, max_member_bytes=max_member_bytes, max_line_bytes=max_line_bytes, budget=budget
            )
