"""The ETag cache where every run is a new container: the transform-stage step's result, a pointer to the
staged Parquet, persists on S3 (moto here), so a rerun of the same version in another process skips the
transform and the staging, and the load reads the staged Parquet back."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.sorting import FlowRunSort

from berlin_rentals.config import ResultsBlockSettings, Settings
from berlin_rentals.staging import staged_prefix
from berlin_rentals.synthetic import batch_name, read_sample_records, with_listing_id, zip_lines
from berlin_rentals.warehouse.ddl import create_warehouse
from flows.ingest import ingest_file
from tasks.common import warehouse_engine
from tasks.transform import etag_cache_key, output_of
from tests.faults import warehouse_rows
from tests.helpers import artifacts_of, logs_of, query, task_runs_of, upload

REPO = Path(__file__).resolve().parents[2]
# The transform's own log line ("<uri>: 11 lines, 10 listings, 1 rejected {...}"): absent on a hit.
TRANSFORM_LINE = " listings, "


def personal_batch(token: str, hour: datetime) -> tuple[bytes, dict[str, str]]:
    """The sample's listings under fresh ids (a fresh ETag: no other test's result answers for it), with
    contact data of this test's own, and a rejected line that carries an e-mail address in its raw text."""
    personal = {
        "email": f"cache-{token}@example.org",
        "firstname": f"Vorname{token}",
        "lastname": f"Nachname{token}",
        "rejected_email": f"rejected-{token}@example.org",
    }
    lines = []
    for n, record in enumerate(read_sample_records()):
        record = with_listing_id(record, int(token, 16) % 10**8 * 100 + n)
        record["data"] |= {
            "contactDetails_email": personal["email"],
            "contactDetails_firstname": personal["firstname"],
            "contactDetails_lastname": personal["lastname"],
        }
        lines.append(json.dumps(record, ensure_ascii=False).encode())
    lines.append(b'{"ok": true, "data": {"contactDetails_email": "%s", "id": ' % personal["rejected_email"].encode())
    return zip_lines(f"{batch_name(hour)}.json", lines), personal


def cache_key(settings: Settings, etag: str) -> str:
    class Source:  # etag_cache_key reads the ETag only
        pass

    source = Source()
    source.etag = etag
    return etag_cache_key(None, {"settings": settings, "source": source})


def stored_result(s3, settings: Settings, etag: str) -> bytes:
    key = f"{ResultsBlockSettings.from_env().results_prefix}{cache_key(settings, etag)}"
    return s3.get_object(Bucket=settings.staging_bucket, Key=key)["Body"].read()


def ingest_in_new_process(key: str, etag: str, tmp_path: Path) -> str:
    """`python -m flows.ingest` in a process of its own, as a new container runs a flow: nothing in memory,
    no local result storage shared with any other (PREFECT_LOCAL_STORAGE_PATH of its own)."""
    done = subprocess.run(
        [sys.executable, "-m", "flows.ingest", os.environ["ETL_RAW_BUCKET"], key, "--etag", etag],
        cwd=REPO,
        env=dict(
            os.environ,
            PYTHONPATH=str(REPO),
            ETL_RETRY_DELAYS="0",
            PREFECT_LOCAL_STORAGE_PATH=str(tmp_path / uuid.uuid4().hex),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def ingest_runs(key: str) -> list:
    """This key's ingest-file runs, oldest first."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["ingest-file"])),
            limit=200,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        )
    return [r for r in reversed(runs) if r.parameters.get("key") == key]


def transform_runs(flow_run_id) -> list:
    runs = sorted(task_runs_of(flow_run_id), key=lambda r: r.expected_start_time)
    return [r for r in runs if r.name.startswith("transform-stage")]


def transform_states(flow_run_id) -> list[str]:
    return [r.state.name for r in transform_runs(flow_run_id)]


def step_seconds(flow_run_id) -> dict[str, float]:
    """The run's seconds per step, from its lineage artifact (as the UI shows them)."""
    lineage = next(a for a in artifacts_of(flow_run_id) if a.key.startswith("lineage-"))
    row = (json.loads(lineage.data) if isinstance(lineage.data, str) else lineage.data)[0]
    return {name: float(value) for name, value in (part.rsplit(" ", 1) for part in row["steps"].split(", "))}


def refuse_fact_writes(settings: Settings, on: bool) -> None:
    """The warehouse refuses every write to fact_flats as a full disk does (SQLSTATE 53100): a transient
    error, so the load retries and then fails the run without parking the file."""
    schema = settings.warehouse_schema
    with warehouse_engine(settings.warehouse_url).begin() as conn:
        if on:
            conn.execute(
                sa.text(
                    f"""CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN RAISE EXCEPTION 'could not extend file (test)' USING ERRCODE = 'disk_full'; END $$"""
                )
            )
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {schema}.fact_flats "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse()"
                )
            )
        else:
            conn.execute(sa.text(f"DROP FUNCTION {schema}.refuse() CASCADE"))


def clean_load(settings: Settings, key: str, etag: str) -> dict:
    """The rows one clean load of the file gives (transformed afresh: force), in a schema of its own."""
    schema = f"r_{uuid.uuid4().hex[:10]}"
    create_warehouse(settings.warehouse_url, schema)
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("WAREHOUSE_SCHEMA", schema)
            state = ingest_file(settings.raw_bucket, key, etag, True, return_state=True)
            assert state.is_completed() and state.result()["status"] == "loaded", state
        return warehouse_rows(warehouse_engine(settings.warehouse_url), schema)
    finally:
        with warehouse_engine(settings.warehouse_url).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def test_a_rerun_in_a_new_process_is_a_cache_hit_and_loads_the_file_once(settings, s3, tmp_path):
    token = uuid.uuid4().hex[:8]
    body, _ = personal_batch(token, datetime(2041, 3, 1, 10, tzinfo=UTC))
    key, etag = upload(s3, settings, batch_name(datetime(2041, 3, 1, 10)) + ".zip", body)

    refuse_fact_writes(settings, on=True)
    try:
        ingest_in_new_process(key, etag, tmp_path)
    finally:
        refuse_fact_writes(settings, on=False)
    first = ingest_runs(key)[-1]
    assert first.state.name == "Failed", first.state
    assert transform_states(first.id) == ["Completed"]
    ledger = query(settings, "SELECT status, attempts FROM {schema}.load_ledger WHERE key = :k", k=key)
    assert [(r.status, r.attempts) for r in ledger] == [("failed", 1)]
    assert query(settings, "SELECT COUNT(*) AS n FROM {schema}.fact_flats")[0].n == 0

    ingest_in_new_process(key, etag, tmp_path)
    second = ingest_runs(key)[-1]
    assert second.id != first.id and second.state.name == "Completed", second.state
    # The transform-stage step answered from the result the first process stored on S3: Prefect's Cached
    # state, and none of the transform's own log lines.
    assert transform_states(second.id) == ["Cached"]
    miss, hit = step_seconds(first.id), step_seconds(second.id)
    print(f"\n[cache] steps of the run that transformed: {miss}\n[cache] steps of the run that hit: {hit}")
    messages = [log.message for log in logs_of(second.id)]
    assert not [m for m in messages if TRANSFORM_LINE in m and key in m], messages
    assert any(TRANSFORM_LINE in m for m in (log.message for log in logs_of(first.id)))
    ledger = query(settings, "SELECT status, attempts FROM {schema}.load_ledger WHERE key = :k", k=key)
    assert [r.status for r in ledger] == ["loaded"]
    # Loaded once, by the second run, from the Parquet the first one staged, and the rows are a clean load's.
    runs = query(settings, "SELECT COUNT(DISTINCT flow_run_id) AS runs, COUNT(*) AS n FROM {schema}.flat_snapshots")
    assert (runs[0].runs, runs[0].n) == (1, len(read_sample_records()))
    got = warehouse_rows(warehouse_engine(settings.warehouse_url), settings.warehouse_schema)
    assert got == clean_load(settings, key, etag)
    # The rejects artifact still lists the rejected line: read back from the staged Parquet on a hit.
    assert any(a.key.startswith("rejects-") for a in artifacts_of(second.id))


def test_the_stored_result_is_a_small_pointer_with_nothing_personal(settings, s3):
    token = uuid.uuid4().hex[:8]
    body, personal = personal_batch(token, datetime(2041, 3, 1, 11, tzinfo=UTC))
    key, etag = upload(s3, settings, batch_name(datetime(2041, 3, 1, 11)) + ".zip", body)
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed() and state.result()["rejected"] == 1, state

    stored = stored_result(s3, settings, etag)
    record = json.loads(stored)
    # Prefect's result record: metadata, and the pickled result (base64) of the step, the pointer.
    pickled = base64.b64decode(record["result"])
    assert len(stored) < 4096, len(stored)
    prefix = staged_prefix(settings.staging_prefix, etag, output_of(settings))
    assert prefix.encode() in pickled and b"fact_flats" in pickled
    for value in personal.values():
        assert value.encode() not in stored and value.encode() not in pickled, value
    # The same values are in the staged Parquet, where the load reads them (this check would see them).
    staged = b"".join(
        s3.get_object(Bucket=settings.staging_bucket, Key=f"{prefix}{table}/part-00000.parquet")["Body"].read()
        for table in ("dim_agency", "rejected_records")
    )
    assert personal["email"].encode() in staged and personal["rejected_email"].encode() in staged
    # Expires with the staging lifecycle, not later.
    expiration = datetime.fromisoformat(record["metadata"]["expiration"])
    assert expiration <= datetime.now(UTC) + timedelta(days=settings.staging_retention_days)


@pytest.mark.parametrize("gone", ["everything", "the tables"])
def test_a_cached_pointer_whose_parquet_is_gone_transforms_again(settings, s3, monkeypatch, gone):
    """`the tables`: the manifest written after midnight, its tables before, so the lifecycle expired them
    a day apart (issue #23): the manifest is there, its tables are not. Never a parked file."""
    token = uuid.uuid4().hex[:8]
    body, _ = personal_batch(token, datetime(2041, 3, 1, 12, tzinfo=UTC))
    key, etag = upload(s3, settings, batch_name(datetime(2041, 3, 1, 12)) + ".zip", body)
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded", state
    expected = warehouse_rows(warehouse_engine(settings.warehouse_url), settings.warehouse_schema)

    # Deleted by hand (or expired a moment before its pointer): the staged Parquet of this ETag is gone.
    prefix = staged_prefix(settings.staging_prefix, etag, output_of(settings))
    listed = s3.list_objects_v2(Bucket=settings.staging_bucket, Prefix=prefix)["Contents"]
    doomed = [o["Key"] for o in listed if gone == "everything" or not o["Key"].endswith("_manifest.json")]
    assert len(doomed) >= 8
    s3.delete_objects(Bucket=settings.staging_bucket, Delete={"Objects": [{"Key": k} for k in doomed]})

    # The same version into another warehouse (a ledger that has not loaded it): the pointer is found...
    schema = f"t_{uuid.uuid4().hex[:10]}"
    create_warehouse(settings.warehouse_url, schema)
    monkeypatch.setenv("WAREHOUSE_SCHEMA", schema)
    other = Settings.from_env()
    try:
        state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
        assert state.is_completed() and state.result()["status"] == "loaded", state
        run_id = state.state_details.flow_run_id
        # ...Prefect answers from the cache, the manifest's HEAD finds nothing, the step runs again.
        assert transform_states(run_id) == ["Cached", "Completed"]
        assert any("which is gone: transforming again" in log.message for log in logs_of(run_id))
        assert s3.head_object(Bucket=settings.staging_bucket, Key=f"{prefix}_manifest.json")
        assert warehouse_rows(warehouse_engine(other.warehouse_url), schema) == expected
    finally:
        with warehouse_engine(settings.warehouse_url).begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


def test_a_catch_ups_staging_and_an_event_runs_transform_share_the_cache(settings, s3):
    """The catch-up's stage-object and the ingest-file flow run the same transform-stage task: a file the
    catch-up staged (whose load then failed, say) is a cache hit for the event's run of it, and a forced
    run transforms again."""
    from prefect import flow

    from berlin_rentals.ingest_result import STAGED
    from flows.ingest import run_ingest

    token = uuid.uuid4().hex[:8]
    body, _ = personal_batch(token, datetime(2041, 3, 1, 13, tzinfo=UTC))
    key, etag = upload(s3, settings, batch_name(datetime(2041, 3, 1, 13)) + ".zip", body)

    @flow(name="cache-probe")
    def stage(force: bool = False):
        result = run_ingest(settings, settings.raw_bucket, key, etag, force, f"attempt-{token}", until_staged=True)
        # What the staging returned, and whether the tables came with it (transformed here) or not (the cache)
        return result.status, result.staged, result.staged.data is not None

    def transform_states(result) -> list[str]:
        runs = task_runs_of(result.state_details.flow_run_id)
        return [t.state.name for t in runs if t.name.startswith("transform")]

    first = stage(return_state=True)
    again = stage(return_state=True)
    forced = stage(force=True, return_state=True)
    assert first.result()[0] == STAGED and first.result()[2]  # transformed here: the tables in memory
    assert transform_states(first) == ["Completed"]
    assert transform_states(again) == ["Cached"] and not again.result()[2]  # from the store: the pointer alone
    assert again.result()[1] == first.result()[1]
    assert transform_states(forced) == ["Completed"] and forced.result()[2]
    state = ingest_file(settings.raw_bucket, key, etag, return_state=True)
    assert state.result()["status"] == "loaded"
    assert [t.state.name for t in task_runs_of(state.state_details.flow_run_id) if t.name.startswith("transform")] == [
        "Cached"
    ]
