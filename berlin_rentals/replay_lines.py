"""The pure part of a replay (berlin_rentals/replay.py): which lines of a loaded object version were
rejected, picking them from its archive, what the current transform makes of them, and where that is
staged. No warehouse, no Prefect."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from berlin_rentals.archive import DEFAULT_MAX_MEMBERS, SourceLine, iter_member_lines, json_members, open_archive
from berlin_rentals.batch import TRANSFORM_VERSION, Batch
from berlin_rentals.masking import Masker
from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.staging import StagedBatch, parquet_bytes, with_source_etag
from berlin_rentals.transform import transform_lines
from berlin_rentals.warehouse.fit import fit_batch

Position = tuple[str, int]  # (zip member, 1-based line number): a line's address in its object


class LinesNotFound(ValueError):
    """Rejected positions that the object does not have: the ledger and the object disagree. Terminal."""


@dataclass(frozen=True)
class RecordedReject:
    """A rejected line as rejected_records holds it (not the exception berlin_rentals.listing.RejectedLine)."""

    member: str
    line_number: int
    reason: str
    raw_withheld: bool = False  # no raw text kept: the version was loaded with personal-data masking

    @property
    def position(self) -> Position:
        return (self.member, self.line_number)


def reason_code(reason: str) -> str:
    """`member line 7: line_too_long: ...` -> `line_too_long` (the stable code the transform writes)."""
    parts = reason.split(": ", 2)
    return parts[1] if len(parts) > 1 else reason


def select_lines(lines: Iterable[SourceLine], wanted: Iterable[Position]) -> Iterator[SourceLine]:
    """The lines at the wanted positions, in the order given (archive order); stops once all are found."""
    remaining = set(wanted)
    if not remaining:
        return
    for line in lines:
        position = (line.member, line.line_number)
        if position in remaining:
            remaining.discard(position)
            yield line
            if not remaining:
                return


def pick_lines(
    archive_path: str | Path | bytes,
    name: str,
    wanted: Iterable[Position],
    *,
    max_member_bytes: int,
    max_line_bytes: int,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[SourceLine]:
    """Read only the members that hold a wanted line, each only up to its last wanted line.

    Lines are numbered exactly as the ingest numbered them (the same reader), so a position in
    rejected_records is the same line here. A wanted position the object does not have means the
    ledger and the object disagree: refused, rather than deleting a reject that was never replayed.
    """
    wanted = set(wanted)
    by_member: dict[str, set[int]] = {}
    for member, line_number in wanted:
        by_member.setdefault(member, set()).add(line_number)
    found: list[SourceLine] = []
    source = io.BytesIO(archive_path) if isinstance(archive_path, bytes) else archive_path
    with open_archive(source, name, max_members=max_members) as archive:
        for info in json_members(archive, name):
            numbers = by_member.get(info.filename)
            if not numbers:  # no wanted line here, or all found already (a name the zip holds twice)
                continue
            lines = iter_member_lines(
                archive, info, name, max_member_bytes=max_member_bytes, max_line_bytes=max_line_bytes
            )
            try:  # select_lines stops at the member's last wanted line: the rest is never inflated
                picked = list(select_lines(lines, [(info.filename, n) for n in numbers]))
            finally:
                lines.close()
            found.extend(picked)
            numbers.difference_update(line.line_number for line in picked)
    missing = wanted - {(line.member, line.line_number) for line in found}
    if missing:
        listed = ", ".join(f"{m} line {n}" for m, n in sorted(missing)[:5])
        raise LinesNotFound(
            f"{name}: {len(missing)} rejected line(s) not found in the object ({listed}); "
            "rejected_records does not match this object version"
        )
    return found


@dataclass(frozen=True)
class ReplayBatch:
    """What the current transform makes of a version's rejected lines."""

    rejected: tuple[RecordedReject, ...]  # the positions replayed, with the reason they had
    batch: Batch

    @property
    def still_rejected(self) -> dict[Position, str]:
        table = self.batch.tables["rejected_records"]
        return {
            (m, n): r
            for m, n, r in zip(
                table.column("member").to_pylist(),
                table.column("line_number").to_pylist(),
                table.column("reason").to_pylist(),
                strict=True,
            )
        }

    @property
    def recovered(self) -> list[Position]:
        still = self.still_rejected
        return [r.position for r in self.rejected if r.position not in still]

    @property
    def changes_nothing(self) -> bool:
        """Nothing recovered and every reason as it was: a replay would write nothing."""
        still = self.still_rejected
        return not self.recovered and all(still[r.position] == r.reason for r in self.rejected)


def transform_rejected(
    lines: list[SourceLine],
    rejected: Iterable[RecordedReject],
    masker: Masker | None,
    pseudonyms: Masker | None = None,
) -> ReplayBatch:
    # Fitted like a load's batch: a recovered listing the warehouse cannot hold stays rejected.
    batch = fit_batch(transform_lines(lines, masker=masker, pseudonyms=pseudonyms))
    return ReplayBatch(rejected=tuple(rejected), batch=batch)


def replay_digest(etag: str, positions: Iterable[Position], masked: bool) -> str:
    """Names the staged replay data: the same lines of the same version stage to the same place."""
    h = hashlib.sha256(f"{etag}|v{TRANSFORM_VERSION}|masked={masked}".encode())
    for member, line_number in sorted(positions):
        h.update(f"|{member}\x00{line_number}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def stage_replay(s3, replay: ReplayBatch, *, bucket: str, staging_prefix: str, etag: str, masked: bool) -> StagedBatch:
    """The replayed tables as Parquet beside the version's own, under replay/etag=<etag>/<digest>/."""
    digest = replay_digest(etag, [r.position for r in replay.rejected], masked)
    prefix = f"{staging_prefix}{replay.batch.variant}/replay/etag={etag}/{digest}/"
    staged = StagedBatch(bucket=bucket, prefix=prefix, rows={n: replay.batch.rows(n) for n in STAGED_TABLES})
    for name in STAGED_TABLES:
        # With its version's ETag as the last column, as every staged file: Redshift's COPY of Parquet wants
        # the staging table's columns exactly.
        table = with_source_etag(replay.batch.tables[name], etag)
        s3.put_object(Bucket=bucket, Key=staged.table_key(name), Body=parquet_bytes(table))
    manifest = {
        "transform_version": TRANSFORM_VERSION,
        "etag": etag,
        "replayed_lines": len(replay.rejected),
        "rows": staged.rows,
    }
    s3.put_object(Bucket=bucket, Key=f"{prefix}_manifest.json", Body=json.dumps(manifest).encode())
    return staged


def replayed_reasons(summary: str | None, replay: ReplayBatch) -> str | None:
    """The ledger's rejected_by_reason after the replay: each replayed line's old reason less, and its new
    one more if it is still rejected; the lines that kept no row stay as they were."""
    counts: Counter[str] = Counter()
    for part in (summary or "").split(","):
        code, _, count = part.partition("=")
        if count.isdigit():
            counts[code] += int(count)
    still = replay.still_rejected
    for reject in replay.rejected:
        counts[reason_code(reject.reason)] -= 1
        if reject.position in still:
            counts[reason_code(still[reject.position])] += 1
    return ",".join(f"{code}={n}" for code, n in sorted(counts.items()) if n > 0)[:1024] or None
