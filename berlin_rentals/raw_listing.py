"""What the catch-up reads: the raw zone's listing, a page at a time, and the ledger rows of what it lists.

I/O, no Prefect (tasks/catch_up.py wraps it). A listing of years of hourly files is read one S3 page
(1,000 keys) at a time and each page's keys are looked up in the ledger with one query, so neither the
S3 responses nor one huge IN list is ever held whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import sqlalchemy as sa

from berlin_rentals.catch_up import Ledger, LedgerEntry, RawObject
from berlin_rentals.source import InvalidSource, normalize_etag, validate_key
from berlin_rentals.warehouse.sql import statement

# Keys per ledger query: a page of the listing, well inside any driver's bind-parameter limit.
KEYS_PER_QUERY = 1000


def raw_object_pages(
    s3, bucket: str, prefix: str, *, on_ignored: Callable[[str, Exception], None] | None = None
) -> Iterator[list[RawObject]]:
    """Every .zip under the prefix, one listing page at a time (one current version per key)."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": KEYS_PER_QUERY}):
        objects = []
        for item in page.get("Contents", []):
            if not item["Key"].endswith(".zip"):
                continue
            try:
                # What the ingest refuses (a relative segment, control characters, an odd ETag) is refused
                # here, before the ledger ever hears of it: it would get attempts, fail, and be parked.
                validate_key(item["Key"], prefix)
                etag = normalize_etag(item["ETag"])
            except InvalidSource as exc:
                # One odd object must not hide the others.
                if on_ignored:
                    on_ignored(item["Key"], exc)
                continue
            objects.append(RawObject(item["Key"], etag, item["Size"], item["LastModified"]))
        yield objects


def ledger_rows(conn: sa.Connection, schema: str, bucket: str, keys: Iterable[str]) -> Ledger:
    """The ledger rows (every version) of these keys only: the whole ledger grows by a row per file, forever."""
    query = statement("ledger/select_ledger_for_keys.sql", schema).bindparams(sa.bindparam("keys", expanding=True))
    ledger: Ledger = {}
    unique = sorted(set(keys))
    for start in range(0, len(unique), KEYS_PER_QUERY):
        for row in conn.execute(query, {"bucket": bucket, "keys": unique[start : start + KEYS_PER_QUERY]}):
            ledger[(row.key, row.etag)] = LedgerEntry(row.status, row.attempts, row.error)
    return ledger
