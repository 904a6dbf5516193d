"""The catch-up when something goes wrong around a file rather than in it: a staging process killed (out of
memory), a key in the listing that the ingest would refuse. What a file costs is its own; the backlog goes on."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from berlin_rentals.synthetic import batch_name
from tests.helpers import query
from tests.stack.test_catch_up import _day, _ledger, _run, _upload_hour


def _pool_processes() -> list[int]:
    """This process's multiprocessing children that are pool workers (spawned, not the resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(int(entry.name))
    return pids


def _kill_stagers(s3, settings, etags: set[str], done: threading.Event, times: int = 1) -> list[int]:
    """SIGKILL a pool process (as the kernel's OOM killer would) once the first of these files is staged (the
    pool is then busy with the others), then, `times` > 1, each next process that starts after it. Returns
    the pids killed."""
    killed: list[int] = []

    def staged() -> bool:
        listing = s3.list_objects_v2(Bucket=settings.staging_bucket, Prefix=settings.staging_prefix)
        return any(etag in item["Key"] for item in listing.get("Contents", []) for etag in etags)

    def watch() -> None:
        deadline = time.monotonic() + 180
        seen: set[int] = set()
        while not done.is_set() and time.monotonic() < deadline and len(killed) < times:
            pids = [pid for pid in _pool_processes() if pid not in seen]
            if pids and (killed or staged()):
                time.sleep(0.2 if killed else 0)  # a new process: dead before it is even ready, its file with it
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                seen |= set(_pool_processes()) | set(pids)
            time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return killed


def test_a_killed_staging_process_costs_the_backlog_nothing(settings, s3):
    """One staging process dies mid-backfill. Before, the broken pool failed every later file with
    BrokenProcessPool, their attempts (counted by begin-attempts) were never ended, and by the fourth hourly
    run every file was parked as out of attempts, most of them never having failed."""
    folder, day = uuid.uuid4().hex[:8], _day()
    files = [_upload_hour(s3, settings, folder, day + timedelta(hours=h), seed=h) for h in range(12)]
    window = dict(since=day, until=day + timedelta(hours=12), prefix=f"{settings.raw_prefix}{folder}/")

    done = threading.Event()
    killed = _kill_stagers(s3, settings, {etag for _, etag in files}, done)
    try:
        _, report = _run(max_concurrency=2, batch_max_files=3, **window)
    finally:
        done.set()
    assert killed, "the run ended before a staging process could be killed: the test proved nothing"
    assert (report["found"], report["loaded_now"], report["failed_now"]) == (12, 12, 0), report
    assert _ledger(settings) == {key: ("loaded", 0) for key, _ in files}
    assert report["parked"] == []


def test_a_file_whose_process_dies_again_when_staged_alone_fails_on_its_own_and_the_rest_load(settings, s3):
    """The pool breaks; its files run again one by one, alone, and the process staging the first of them dies
    too: that file is the one that killed it. It fails (retryable, counted once), the others load, and the
    next hourly run loads it."""
    folder, day = uuid.uuid4().hex[:8], _day()
    files = [_upload_hour(s3, settings, folder, day + timedelta(hours=h), seed=h) for h in range(8)]
    window = dict(since=day, until=day + timedelta(hours=8), prefix=f"{settings.raw_prefix}{folder}/")

    done = threading.Event()
    killed = _kill_stagers(s3, settings, {etag for _, etag in files}, done, times=2)
    try:
        _, report = _run(max_concurrency=2, batch_max_files=3, **window)
    finally:
        done.set()
    assert len(killed) == 2, "fewer processes were killed than the test needs"
    assert (report["found"], report["loaded_now"], report["failed_now"]) == (8, 7, 1), report
    (culprit,) = report["failed"]
    assert _ledger(settings) == {key: ("failed", 1) if key == culprit else ("loaded", 0) for key, _ in files}

    _, again = _run(**window)
    assert (again["loaded_now"], again["already_loaded"], again["failed_now"]) == (1, 7, 0)


def test_a_key_the_ingest_would_refuse_never_reaches_the_ledger(settings, s3):
    """`raw/<folder>/../<name>.zip` is listed by S3 like any key. Before, the catch-up counted attempts for it,
    the ingest refused it (InvalidSource), and it was parked with an alert, though such a key must never reach
    the ledger (or any SQL)."""
    folder, day = uuid.uuid4().hex[:8], _day()
    good = _upload_hour(s3, settings, folder, day, seed=0)
    odd_key = f"{settings.raw_prefix}{folder}/../{folder}/{batch_name(day + timedelta(hours=1))}.zip"
    s3.put_object(Bucket=settings.raw_bucket, Key=odd_key, Body=b"PK")
    assert odd_key in [o["Key"] for o in s3.list_objects_v2(Bucket=settings.raw_bucket, Prefix=odd_key)["Contents"]]
    window = dict(since=day, until=day + timedelta(hours=2), prefix=f"{settings.raw_prefix}{folder}/")

    _, report = _run(**window)

    assert (report["found"], report["loaded_now"], report["failed_now"], report["parked"]) == (1, 1, 0, [])
    assert _ledger(settings) == {good[0]: ("loaded", 0)}


def test_a_version_replaced_after_the_listing_is_skipped_before_any_ledger_write(settings, s3):
    """The listing saw one version; by the time the catch-up HEADs it, a newer one has replaced it (here: a share
    that names the older ETag). Before, its attempt was counted first, then the ingest found it superseded and
    left the attempt open in the ledger. Now it is skipped as replaced, and the ledger never hears of it."""
    from berlin_rentals.shares import as_parameter, raw_objects
    from flows.catch_up import catch_up

    folder, day = uuid.uuid4().hex[:8], _day()
    key, old_etag = _upload_hour(s3, settings, folder, day, seed=1)
    _, new_etag = _upload_hour(s3, settings, folder, day, seed=2)
    assert new_etag != old_etag
    objects, _ = raw_objects([{"key": key, "etag": old_etag, "last_modified": day.isoformat()}], settings.raw_prefix)

    report = catch_up(files=as_parameter(objects), bucket=settings.raw_bucket, batch_max_files=2)

    assert (report["loaded_now"], report["failed_now"], report["skipped_now"]) == (0, 0, 1), report
    assert _ledger(settings) == {}
    assert query(settings, "SELECT key, etag, finished_at FROM {schema}.load_attempts") == []
