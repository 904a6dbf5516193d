"""`make demo`: upload the sample batch and a few derived hours to the local stack and watch them land.

The demo never calls the flow: S3 notifies SQS, the bridge emits a Prefect event per object, the
`ingest-file` deployment's trigger starts a run on the worker. It prints, per file, the time from
upload to rows visible. Run after `make up` (the Makefile does both); a second run skips every file.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from berlin_rentals.config import read_env_file

ENV_FILE = Path(os.environ.get("ETL_ENV_FILE", ".local/env"))


def load_stack_env() -> None:
    # Before Prefect is imported: it reads PREFECT_API_URL once, at import.
    if not ENV_FILE.exists():
        sys.exit(f"{ENV_FILE} not found: run `make up` first")
    for key, value in read_env_file(ENV_FILE).items():
        os.environ.setdefault(key, value)


def demo_batches() -> list[tuple[str, bytes, str]]:
    """(file name, zip bytes, what it shows): the real sample, three later hours, one late arrival."""
    from berlin_rentals.synthetic import SAMPLE_ZIP, batch_name, derived_batch, read_sample_records

    records = read_sample_records()
    base = datetime(2019, 1, 13, 15, tzinfo=UTC)
    batches = [(SAMPLE_ZIP.name, SAMPLE_ZIP.read_bytes(), "the real sample batch")]
    for step, factor in ((1, 1.02), (2, 1.05), (3, 1.03)):
        hour = base + timedelta(hours=step)
        body = derived_batch(
            records, hour, rent_factor=factor, modified=hour - timedelta(minutes=20), seed=step, new_listings=3 * step
        )
        batches.append((batch_name(hour) + ".zip", body, f"rents x{factor}, {3 * step} new listings"))
    late_hour = base - timedelta(hours=1)
    late = derived_batch(records, late_hour, rent_factor=0.97, modified=datetime(2019, 1, 10, tzinfo=UTC), seed=9)
    batches.append((batch_name(late_hour) + ".zip", late, "arrives late with older versions: history only"))
    batches.append((SAMPLE_ZIP.name, SAMPLE_ZIP.read_bytes(), "the sample again: same ETag, skipped"))
    return batches


def wait_for_ledger(engine, schema: str, key: str, etag: str, timeout: float = 180.0):
    """Poll the ledger until this version is loaded: its row commits with the data, so rows are visible then."""
    import sqlalchemy as sa

    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    f"SELECT status, fact_inserted, fact_updated, fact_stale, rejected_count, error "
                    f"FROM {schema}.load_ledger WHERE key = :k AND etag = :e"
                ),
                {"k": key, "e": etag},
            ).first()
        if row is not None and row.status in ("loaded", "parked"):
            return row
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def wait_until_idle(timeout: float = 120.0) -> None:
    """Wait until no ingest-file run is scheduled, pending or running: every event so far was acted on.

    Only ingest-file runs: the catch-up's hourly runs are always scheduled ahead."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    active = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING])
        )
    )
    ingest = FlowFilter(name=FlowFilterName(any_=["ingest-file"]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while client.read_flow_runs(flow_filter=ingest, flow_run_filter=active):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(client.read_flow_runs(flow_filter=ingest, flow_run_filter=active))} "
                    f"ingest-file runs still scheduled, pending or running after {timeout:.0f} s "
                    "(see .local/logs/worker.log)"
                )
            time.sleep(0.5)


def wait_until_forwarded(sqs, queue_url: str, timeout: float = 60.0) -> None:
    """Wait until the bridge has posted (and deleted) every notification on the queue."""
    deadline = time.monotonic() + timeout
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while any(
        int(v) for v in sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"].values()
    ):
        if time.monotonic() > deadline:
            raise SystemExit(
                f"the bridge left notifications on the queue for {timeout:.0f} s: see .local/logs/bridge.log"
            )
        time.sleep(0.3)


# The trigger turns an event into a run within a few seconds (about 3 s here, event to submit): wait
# this long after the bridge forwarded a repeat before saying that Prefect dropped it.
REPEAT_GRACE_SECONDS = 12.0


def runs_of(key: str, etag: str, since: datetime) -> list:
    """The ingest-file runs created for this object version since then (the event's parameters)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-file"])),
            flow_run_filter=FlowRunFilter(expected_start_time=FlowRunFilterExpectedStartTime(after_=since)),
        )
    return [r for r in runs if r.parameters.get("key") == key and r.parameters.get("etag") == etag]


def what_a_repeat_did(key: str, etag: str, since: datetime, claimed: set) -> str:
    """An upload of a version the ledger already has: did Prefect drop its event, or did a run skip it?

    `claimed` holds the runs already told for an earlier repeat: the same version uploaded twice in a
    row is one event id, so one run (or none) answers both."""
    runs = sorted(runs_of(key, etag, since), key=lambda r: r.created)
    own = [r for r in runs if r.id not in claimed]
    if own:
        claimed.add(own[0].id)
        state = own[0].state.name if own[0].state else "?"
        return f"same ETag: its run ({own[0].name!r}, {state}) found the ledger row and wrote nothing"
    return (
        "no run: the bridge sent the same event id as an earlier upload of this version (uuid5 of URI and "
        "ETag) and Prefect dropped the repeat"
    )


# What the demo shows of `flats` (25 columns are too wide for a terminal): BI's view of rent and agent.
BI_COLUMNS = (
    "listing_id",
    "district",
    "living_space",
    "number_of_rooms",
    "base_rent",
    "total_rent",
    "agency_name",
    "agent_name",
    "agent_email",
    "agent_phone",
    "is_active",
    "has_pictures",
)


def bi_table(rows: list[dict], columns: tuple[str, ...] = BI_COLUMNS) -> list[str]:
    """Rows as aligned text lines, a header first; NULL as '-'."""
    cells = [[("-" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(columns)]
    return [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(columns), *cells]
    ]


def print_bi_rows(settings, limit: int = 5) -> None:
    """A few rows of `flats` as the BI role reads them: its own login, not the loader's."""
    import sqlalchemy as sa

    if not settings.warehouse_bi_url:
        print("\nBI view: WAREHOUSE_BI_URL is not set (make up writes it for the local PostgreSQL)")
        return
    engine = sa.create_engine(settings.warehouse_bi_url)
    try:
        with engine.connect() as conn:
            role = conn.execute(sa.text("SELECT current_user")).scalar_one()
            found = conn.execute(
                sa.text(f"SELECT * FROM {settings.warehouse_bi_schema}.flats ORDER BY listing_id LIMIT :n"),
                {"n": limit},
            )
            total = conn.execute(sa.text(f"SELECT count(*) FROM {settings.warehouse_bi_schema}.flats")).scalar_one()
            rows = [dict(row._mapping) for row in found]
    finally:
        engine.dispose()
    print(
        f"\nBI view {settings.warehouse_bi_schema}.flats as {role} ({len(rows)} of {total} listings, "
        f"{len(BI_COLUMNS)} of its 25 columns; agents are keyed pseudonyms; all of it: make sql-bi)"
    )
    for line in bi_table(rows):
        print("  " + line)


def run_market_report(timeout: float = 180.0) -> str:
    """The market-report deployment, run once by the worker as the daily schedule would: a sentence."""
    from prefect.deployments import run_deployment

    run = run_deployment("market-report/market-report", timeout=timeout)
    if not run.state or not run.state.is_completed():
        return f"market report: run {run.name} ended {run.state and run.state.name} (see its logs in the UI)"
    return f"market report: run {run.name} completed; its chart and figures are the artifacts 'market-report'"


def upload_outcome(row) -> tuple[str, str]:
    """(status, what it did) of an upload, from its ledger row (None: no row within the wait)."""
    if row is None:
        return "TIMEOUT", "not loaded within 180 s: see .local/logs/worker.log"
    if row.status == "parked":
        return "PARKED", row.error or ""
    return "loaded", (
        f"+{row.fact_inserted} new, {row.fact_updated} updated, "
        f"{row.fact_stale} older kept as history, {row.rejected_count} rejected"
    )


def main() -> None:
    load_stack_env()
    import sqlalchemy as sa

    from berlin_rentals.config import Queues, Settings
    from berlin_rentals.s3 import s3_client, sqs_client
    from berlin_rentals.source import normalize_etag
    from tasks.common import warehouse_engine

    settings = Settings.from_env()
    s3 = s3_client(settings)
    sqs = sqs_client(settings)
    queue_url = sqs.get_queue_url(QueueName=Queues.from_env().queue_name)["QueueUrl"]
    engine = warehouse_engine(settings.warehouse_url)
    schema = settings.warehouse_schema
    started = time.perf_counter()
    outcomes = []
    repeats: list[tuple[int, str, str, datetime]] = []  # (index in outcomes, key, etag, uploaded at)
    batches = demo_batches()
    print(
        f"\n== uploading {len(batches)} batches to s3://{settings.raw_bucket}/{settings.raw_prefix}; "
        "S3 notifies SQS, the bridge emits Prefect events, the worker runs ingest-file\n"
    )
    for name, body, what in batches:
        key = f"{settings.raw_prefix}{name}"
        # A single-part upload's ETag is the MD5 of its bytes: we know before uploading whether the
        # ledger has this version already, and then expect its run to skip.
        known_before = wait_for_ledger(engine, schema, key, hashlib.md5(body).hexdigest(), timeout=0)
        t0, uploaded = time.perf_counter(), datetime.now(UTC)
        etag = normalize_etag(s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=body)["ETag"])
        if known_before is not None:
            repeats.append((len(outcomes), key, etag, uploaded))  # what it did is told once all are forwarded
            outcomes.append((name, "skipped", None, "", what))
            continue
        row = wait_for_ledger(engine, schema, key, etag)
        status, detail = upload_outcome(row)
        outcomes.append((name, status, time.perf_counter() - t0, detail, what))

    if repeats:
        wait_until_forwarded(sqs, queue_url)
        deadline = time.monotonic() + REPEAT_GRACE_SECONDS
        while time.monotonic() < deadline and not all(runs_of(key, etag, at) for _, key, etag, at in repeats):
            time.sleep(0.5)
    wait_until_idle()  # the runs it caused have finished (their lineage and state), not only their loads
    claimed: set = set()
    for index, key, etag, at in repeats:
        name, status, seconds, _, what = outcomes[index]
        outcomes[index] = (name, status, seconds, what_a_repeat_did(key, etag, at, claimed), what)
    with engine.connect() as conn:
        counts = {
            t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {schema}.{t}")).scalar_one()
            for t in (
                "fact_flats",
                "flat_snapshots",
                "dim_address",
                "dim_city",
                "dim_agency",
                "dim_agent",
                "dim_district",
                "rejected_records",
                "load_ledger",
            )
        }
        history = conn.execute(
            sa.text(
                f"SELECT batch_hour, base_rent FROM {schema}.flat_snapshots WHERE listing_id = 56906504 ORDER BY batch_hour"
            )
        ).all()
        known = conn.execute(
            sa.text(
                f"""SELECT c.city, a.quarter, a.postcode, f.base_rent FROM {schema}.fact_flats f
                JOIN {schema}.dim_address a ON a.address_id = f.address_id
                JOIN {schema}.dim_city c ON c.city_id = a.city_id WHERE f.listing_id = 56906504"""
            )
        ).first()

    print(f"{'file':45} {'status':8} {'upload→rows':>11}  detail")
    for name, status, seconds, detail, what in outcomes:
        latency = f"{seconds:9.2f} s" if seconds is not None else f"{'-':>11}"
        print(f"{name:45} {status:8} {latency}  {detail}  ({what})")
    loaded = sum(1 for o in outcomes if o[1] == "loaded")
    skipped = sum(1 for o in outcomes if o[1] == "skipped")
    failed = len(outcomes) - loaded - skipped
    print(f"\nfiles: {loaded} loaded, {skipped} skipped, {failed} failed in {time.perf_counter() - started:.1f} s")
    print("\nrows per table in schema", schema)
    for table, count in counts.items():
        print(f"  {table:18} {count:6}")
    if known:
        print(
            f"\nlisting 56906504: {known.city} / {known.quarter} / {known.postcode}, current base rent {known.base_rent}"
        )
        print("  rent history: " + ", ".join(f"{h:%Y-%m-%d %H:00} {r}" for h, r in history))
    print_bi_rows(settings)
    ui = os.environ.get("PREFECT_UI_URL") or os.environ["PREFECT_API_URL"].removesuffix("/api")
    print(f"\n{run_market_report()} ({ui}/artifacts/key/market-report)")
    print(f"\nPrefect UI: {ui}/runs  (flow 'ingest-file'; each run has lineage artifacts: {ui}/artifacts)")
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        print(f"  its login asks for PREFECT_API_AUTH_STRING: `grep AUTH_STRING {ENV_FILE}`")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except TimeoutError as exc:
        sys.exit(f"demo: {exc}")
