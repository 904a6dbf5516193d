"""What a load of many files sends to Redshift (berlin_rentals/warehouse/load.py), captured by the recording
driver: every statement parses as Redshift SQL, one COPY per table from the batch's manifest, all of it in
one transaction, and a backfill's commits counted: 168 files in batches of 24 commit 7 times, where one
load per file commits 168 times. The same SQL runs for real on PostgreSQL in tests/stack/test_batch_load.py
(and, a file at a time, in tests/stack/test_exactly_once.py).
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
import sqlglot
from sqlglot import exp

import tests.recording_dbapi as driver
from berlin_rentals.archive import iter_lines
from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.staging import batch_manifest_key, manifest_body
from berlin_rentals.transform import transform_lines
from berlin_rentals.warehouse.engines import RedshiftTarget
from berlin_rentals.warehouse.load import BatchFile, load_staged_batch, load_staged_files

ROLE = "arn:aws:iam::123456789012:role/rentals-redshift-copy"


@pytest.fixture(scope="module")
def sample_batch(sample_zip):
    return transform_lines(iter_lines(sample_zip, "sample.zip"))


def _files(batch, count: int) -> list[BatchFile]:
    return driver.staged_files(batch, count)


def _manifests(batch_id: str) -> dict[str, str]:
    return {t: f"s3://rentals-staging/{batch_manifest_key('clean/', batch_id, t)}" for t in STAGED_TABLES}


def _engine() -> sa.Engine:
    engine = sa.create_engine("redshift+redshift_connector://loader@cluster:5439/rentals", module=driver)
    with engine.connect():
        pass
    return engine


def _recorded_batch(files: list[BatchFile], batch_id: str = "batch-1", ledger: list | None = None):
    """The statements of one batch load through the Redshift target; the driver answers the ledger read
    with `ledger` rows (key, etag, status, last_modified, version_id) and the counts with a row per file."""
    engine = _engine()
    driver.STATEMENTS.clear()
    answers = driver.batch_answers([f.source.etag for f in files], ledger)
    driver._ANSWERS[:0] = answers
    try:
        report = load_staged_files(
            engine, RedshiftTarget("berlin_rentals", ROLE), files, run_id=batch_id, manifests=_manifests(batch_id)
        )
    finally:
        del driver._ANSWERS[: len(answers)]
    return list(driver.STATEMENTS), report


def _body(statements) -> list[str]:
    return [driver.rendered(sql, params) for sql, params in statements if sql not in ("COMMIT", "ROLLBACK")]


def test_every_statement_of_a_batch_parses_as_redshift_sql(sample_batch):
    statements, report = _recorded_batch(_files(sample_batch, 3))
    assert len(report.loaded) == 3
    for sql in _body(statements):
        tree = sqlglot.parse_one(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        if isinstance(tree, exp.Command):  # sqlglot keeps LOCK, ANALYZE (and COPY with MANIFEST) as raw commands
            assert tree.this.upper() in ("LOCK", "COPY", "ANALYZE"), sql


def test_a_batch_copies_each_table_once_from_its_manifest_in_one_transaction(sample_batch):
    statements, _ = _recorded_batch(_files(sample_batch, 24), batch_id="b-7")
    joined = [" ".join(sql.split()) for sql, _ in statements]
    copies = [sql for sql in joined if sql.upper().startswith("COPY")]
    assert len(copies) == len(STAGED_TABLES)  # 24 files, still one COPY per table
    for sql, table in zip(copies, STAGED_TABLES, strict=True):
        assert sql.startswith(f"COPY stage_{table} FROM 's3://rentals-staging/clean/batches/b-7/{table}.manifest'")
        assert f"IAM_ROLE '{ROLE}'" in sql and sql.endswith("FORMAT AS PARQUET MANIFEST STATUPDATE OFF")
        assert "CREDENTIALS" not in sql.upper()
    assert joined.count("COMMIT") == 1 and "ROLLBACK" not in joined[: joined.index("COMMIT")]
    lock = joined.index("LOCK berlin_rentals.load_ledger")
    assert lock < joined.index(next(s for s in joined if s.startswith("SELECT key, etag, status")))
    assert lock < joined.index(copies[0])
    # the staging tables of the facts are distributed as the facts are
    creates = [sql for sql in joined if sql.startswith("CREATE TEMPORARY TABLE stage_fact_flats")]
    assert creates and "DISTKEY(listing_id)" in creates[0].replace(" (", "(")
    # one MERGE of the facts, from one row per listing with the stale ones dropped first (Redshift's MERGE
    # has no conditional clauses), and one multi-row INSERT of the batch's files
    merges = [i for i, s in enumerate(joined) if s.startswith("MERGE INTO berlin_rentals.fact_flats")]
    stale = joined.index(next(s for s in joined if s.startswith("DELETE FROM stage_batch_fact_flats USING")))
    assert len(merges) == 1 and stale < merges[0]
    assert "USING stage_batch_fact_flats AS s" in joined[merges[0]]
    assert sum(s.startswith("INSERT INTO stage_batch_files") for s in joined) == 1
    # statements per batch do not grow with its files
    few, _ = _recorded_batch(_files(sample_batch, 2))
    assert len(statements) == len(few)


def test_a_backfill_of_168_files_in_batches_of_24_commits_7_times_not_168(sample_batch):
    files = _files(sample_batch, 168)
    commits = 0
    for start in range(0, 168, 24):
        statements, report = _recorded_batch(files[start : start + 24], batch_id=f"b{start}")
        assert len(report.loaded) == 24
        commits += [sql for sql, _ in statements].count("COMMIT")
    assert commits == 7

    engine = _engine()
    driver.STATEMENTS.clear()
    for file in files:
        load_staged_batch(
            engine, RedshiftTarget("berlin_rentals", ROLE), file.source, file.staged, file.stats, flow_run_id="r"
        )
    assert [sql for sql, _ in driver.STATEMENTS].count("COMMIT") == 168


def test_a_file_the_ledger_shows_loaded_leaves_the_batch_before_any_copy(sample_batch):
    files = _files(sample_batch, 3)
    loaded = [(files[1].source.key, files[1].source.etag, "loaded", files[1].source.last_modified, None)]
    statements, report = _recorded_batch(files, ledger=loaded)
    assert set(report.loaded) == {files[0].id, files[2].id}
    skipped = report.reports[files[1].id]
    assert (skipped.status, skipped.ledger) == ("skipped", "loaded")
    # it never enters the load's file table, which is written before any COPY
    joined = [" ".join(driver.rendered(sql, params).split()) for sql, params in statements]
    written = next(i for i, s in enumerate(joined) if s.startswith("INSERT INTO stage_batch_files"))
    assert written < next(i for i, s in enumerate(joined) if s.startswith("COPY"))
    assert files[1].source.etag not in joined[written] and files[0].source.etag in joined[written]


def test_the_manifest_lists_every_file_of_the_batch_as_mandatory_with_its_length(sample_batch):
    files = _files(sample_batch, 3)
    manifest = json.loads(manifest_body([f.staged for f in files], "fact_flats"))
    assert manifest["entries"] == [
        {"url": f.staged.uri("fact_flats"), "mandatory": True, "meta": {"content_length": 1000 + len("fact_flats")}}
        for f in files
    ]


@pytest.mark.parametrize(
    "manifest", ["s3://rentals-staging/clean/x.manifest' IAM_ROLE 'evil", "s3://Bad_Bucket/x.manifest", "http://x/y"]
)
def test_a_batch_copy_refuses_an_unexpected_manifest_location(manifest):
    with pytest.raises(ValueError, match="unexpected manifest"):
        RedshiftTarget("berlin_rentals", ROLE).batch_copy_sql("fact_flats", manifest)


def test_a_batch_id_is_a_safe_path_segment():
    with pytest.raises(ValueError):
        batch_manifest_key("clean/", "../../raw", "fact_flats")
