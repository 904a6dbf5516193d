"""Everything the Redshift path sends for a real batch, captured by a recording driver and checked:
parsed as Redshift SQL (sqlglot), COPY options asserted, and all of it inside one transaction.

The MERGE and ledger SQL here are the same files that run for real on PostgreSQL in the other tests,
so a difference between the two paths fails one side or the other.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
import sqlglot
from sqlglot import exp

import tests.recording_dbapi as driver
from berlin_rentals.archive import iter_lines
from berlin_rentals.batch import output_variant
from berlin_rentals.model import STAGED_TABLES
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch, staged_prefix
from berlin_rentals.transform import transform_lines
from berlin_rentals.warehouse.ddl import ddl_statements
from berlin_rentals.warehouse.engines import RedshiftTarget
from berlin_rentals.warehouse.load import load_staged_batch

ROLE = "arn:aws:iam::123456789012:role/rentals-redshift-copy"
ETAG = "793fb4ae6d07bb5b55ea181ad1fed13a"
SAMPLE_SOURCE = SourceObject(
    "rentals-raw", "raw/immobilienscout24_berlin_20190113_15.zip", ETAG, 29979, datetime(2019, 1, 13, 15, 1, tzinfo=UTC)
)


@pytest.fixture(scope="module")
def sent(sample_zip):
    """(statements in order, the source) for loading the real sample through the Redshift target."""
    statements, report = _recorded_load(sample_zip, [])
    assert report.status == "loaded"
    return statements, SAMPLE_SOURCE


def test_every_statement_parses_as_redshift_sql(sent):
    statements, _ = sent
    body = [driver.rendered(sql, params) for sql, params in statements if sql not in ("COMMIT", "ROLLBACK")]
    assert len(body) > 20
    for sql in body:
        tree = sqlglot.parse_one(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        if isinstance(tree, exp.Command):  # sqlglot keeps LOCK and ANALYZE as raw commands
            assert tree.this.upper() in ("LOCK", "ANALYZE"), sql


def test_copy_reads_each_tables_parquet_for_this_etag_with_the_iam_role(sent):
    statements, _ = sent
    copies = [sql for sql, _ in statements if sql.lstrip().upper().startswith("COPY")]
    tables = list(STAGED_TABLES)
    assert tables[:5] == ["dim_city", "dim_district", "dim_address", "dim_agency", "dim_agent"]
    assert len(copies) == len(tables)
    for sql, table in zip(copies, tables, strict=True):
        tree = sqlglot.parse_one(sql, read="redshift")
        assert isinstance(tree, exp.Copy)
        assert tree.this.name == f"stage_{table}"
        assert f"FROM 's3://rentals-staging/clean/{output_variant()}/etag={ETAG}/{table}/'" in sql
        assert f"IAM_ROLE '{ROLE}'" in sql and sql.rstrip().endswith("FORMAT AS PARQUET")
        assert "CREDENTIALS" not in sql.upper() and "ACCESS_KEY" not in sql.upper()


def test_claim_staging_merges_and_ledger_run_in_one_transaction(sent):
    statements, source = sent
    sqls = [" ".join(sql.split()[:2]).upper() for sql, _ in statements]
    assert sqls[0] == "LOCK BERLIN_RENTALS.LOAD_LEDGER"
    commit = sqls.index("COMMIT")
    assert not any(s.startswith(("COMMIT", "ROLLBACK")) for s in sqls[:commit])
    # After the one COMMIT only the pool's reset-on-return may follow (a no-op ROLLBACK).
    assert set(sqls[commit + 1 :]) <= {"ROLLBACK"}
    order = [s for s in sqls if s.split()[0] in ("MERGE", "UPDATE", "INSERT")]
    assert order[0] == "INSERT INTO"  # the load's file table, which the ledger claim reads
    merges = [sql.split()[2] for sql, _ in statements if sql.lstrip().upper().startswith("MERGE")]
    assert merges == driver.MERGE_ORDER
    last_update = [sql for sql, _ in statements if sql.lstrip().upper().startswith("UPDATE")][-2]
    assert "status = 'loaded'" in last_update
    creates = [sql for sql, _ in statements if sql.lstrip().upper().startswith("CREATE")]
    assert all(sql.lstrip().upper().startswith("CREATE TEMPORARY TABLE STAGE_") for sql in creates)


def test_the_ddl_of_every_table_parses_with_its_distribution_and_sort_keys():
    for sql in ddl_statements("redshift"):
        tree = sqlglot.parse_one(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        assert isinstance(tree, exp.Create)
        properties = tree.args["properties"].sql(dialect="redshift") if tree.args.get("properties") else ""
        assert "DISTSTYLE" in properties and "SORTKEY" in properties, sql


def test_the_ddl_of_dim_district_and_dim_agent_copies_them_to_every_node_with_their_keys():
    ddl = {}
    for sql in ddl_statements("redshift"):
        tree = sqlglot.parse_one(sql, read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        ddl[tree.this.this.name] = tree
    for name, key in (("dim_district", "district_id"), ("dim_agent", "agent_id")):
        tree = ddl[name]
        properties = tree.args["properties"].sql(dialect="redshift")
        assert "DISTSTYLE ALL" in properties and f"SORTKEY({key})" in properties
        columns = {c.name: c.args["kind"].sql(dialect="redshift") for c in tree.find_all(exp.ColumnDef)}
        assert list(columns) == [c.name for c in STAGED_TABLES[name]]
        assert columns[key] == "BIGINT"
    agent = {c.name: c.args["kind"].sql(dialect="redshift") for c in ddl["dim_agent"].find_all(exp.ColumnDef)}
    assert agent["email_pseudonym"] == agent["phone_pseudonym"] == agent["agent_name_pseudonym"] == "VARCHAR(64)"
    fact = {c.name: c.args["kind"].sql(dialect="redshift") for c in ddl["fact_flats"].find_all(exp.ColumnDef)}
    assert (fact["latitude"], fact["number_of_bedrooms"], fact["agent_id"]) == (
        "DECIMAL(10, 7)",
        "DECIMAL(6, 2)",
        "BIGINT",
    )
    assert (fact["created_at"], fact["has_pictures"]) == ("TIMESTAMP WITH TIME ZONE", "BOOLEAN")
    address = {c.name for c in ddl["dim_address"].find_all(exp.ColumnDef)}
    assert "district_id" in address


# ---- what a correction and a refused old version send ------------------------------------------


def _recorded_load(
    sample_zip, answers: list, source: SourceObject = SAMPLE_SOURCE
) -> tuple[list[tuple[str, object]], object]:
    """The statements of the sample's load through the Redshift target, with the driver also answering
    `answers` (pattern, rows, columns) ahead of its own: what the warehouse would say in that case."""
    batch = transform_lines(iter_lines(sample_zip, "sample.zip"))
    staged = StagedBatch("rentals-staging", staged_prefix("clean/", ETAG), {n: batch.rows(n) for n in batch.tables})
    engine = sa.create_engine("redshift+redshift_connector://loader@cluster:5439/rentals", module=driver)
    with engine.connect():
        pass
    driver.STATEMENTS.clear()
    driver._ANSWERS[:0] = answers
    try:
        report = load_staged_batch(
            engine, RedshiftTarget("berlin_rentals", ROLE), source, staged, batch.stats, flow_run_id="run-1"
        )
    finally:
        del driver._ANSWERS[: len(answers)]
    return list(driver.STATEMENTS), report


def _heads(statements) -> list[str]:
    return [" ".join(sql.split()[:3]).upper() for sql, _ in statements]


def _parse_all(statements) -> None:
    for sql, params in statements:
        if sql in ("COMMIT", "ROLLBACK"):
            continue
        tree = sqlglot.parse_one(driver.rendered(sql, params), read="redshift", error_level=sqlglot.ErrorLevel.RAISE)
        if isinstance(tree, exp.Command):
            assert tree.this.upper() in ("LOCK", "ANALYZE"), sql


def test_a_correction_restates_its_key_in_redshift_sql_inside_the_one_transaction(sample_zip):
    # The warehouse holds facts of another version of this key: the capture inserts rows.
    restating = [(re.compile(r"INSERT INTO stage_restated_flats", re.I), [(1,)], ["n"])]
    statements, report = _recorded_load(sample_zip, restating)
    assert report.status == "loaded"
    _parse_all(statements)
    heads = _heads(statements)
    assert heads[0] == "LOCK BERLIN_RENTALS.LOAD_LEDGER" and heads.count("COMMIT") == 1
    joined = [" ".join(sql.split()) for sql, _ in statements]
    assert not any("pg_advisory" in sql or "ROW EXCLUSIVE MODE" in sql for sql in joined)  # PostgreSQL's alone

    def at(prefix: str) -> int:
        return next(i for i, sql in enumerate(joined) if sql.startswith(prefix))

    release = at("UPDATE berlin_rentals.dim_agency SET source_modified_at = NULL")
    release_agents = at("UPDATE berlin_rentals.dim_agent SET source_modified_at = NULL")
    rebuild = at("UPDATE berlin_rentals.fact_flats SET last_modified_at = n.last_modified_at")
    remove = at("DELETE FROM berlin_rentals.fact_flats WHERE source_key")
    merge = at("MERGE INTO berlin_rentals.fact_flats")
    dimensions = ("dim_agent", "dim_agency", "dim_address", "dim_district", "dim_city")
    orphans = [at(f"DELETE FROM berlin_rentals.{t} WHERE") for t in dimensions]
    assert orphans == sorted(orphans)  # what points at a row goes first: agent, agency, address, district, city
    assert release < at("MERGE INTO berlin_rentals.dim_agency") < rebuild < remove < merge < min(orphans)
    assert release_agents < at("MERGE INTO berlin_rentals.dim_agent") < rebuild
    rerank_agents = at("UPDATE berlin_rentals.dim_agent SET source_modified_at = n.newest")
    assert merge < rerank_agents < at("DELETE FROM berlin_rentals.dim_agent WHERE")
    assert max(orphans) < at("DELETE FROM berlin_rentals.flat_snapshots")
    assert at("DELETE FROM berlin_rentals.flat_snapshots") < at(
        "UPDATE berlin_rentals.load_ledger SET status = 'loaded'"
    )


def test_an_older_version_than_the_loaded_one_is_refused_in_redshift_sql_before_any_data(sample_zip):
    newer = driver.batch_answers(
        [ETAG], [(SAMPLE_SOURCE.key, "b" * 32, "loaded", datetime(2019, 1, 13, 15, 30, tzinfo=UTC), None)]
    )
    statements, report = _recorded_load(sample_zip, newer)
    assert report.status == "superseded" and "b" * 32 in report.reason
    _parse_all(statements)
    heads = _heads(statements)
    assert heads[0] == "LOCK BERLIN_RENTALS.LOAD_LEDGER"
    body = heads[: heads.index("COMMIT")]
    assert not any(h.startswith(("COPY", "MERGE", "CREATE", "DELETE")) for h in body)
    last = " ".join(statements[heads.index("COMMIT") - 1][0].split())
    assert last.startswith("UPDATE berlin_rentals.load_ledger SET status = 'superseded'")


def test_every_row_the_redshift_load_writes_names_its_raw_bucket_and_version(sample_zip):
    version = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    statements, report = _recorded_load(sample_zip, [], dataclasses.replace(SAMPLE_SOURCE, version_id=version))
    assert report.status == "loaded"
    _parse_all(statements)
    written = {}
    for sql, params in statements:
        if sql in ("COMMIT", "ROLLBACK"):
            continue
        tree = sqlglot.parse_one(driver.rendered(sql, params), read="redshift")
        if isinstance(tree, exp.Insert | exp.Merge) and tree.this.find(exp.Table) is not None:
            table = tree.this.find(exp.Table).name
            if table in ("fact_flats", "flat_snapshots", "rejected_records"):
                written[table] = driver.rendered(sql, params)
    assert set(written) == {"fact_flats", "flat_snapshots", "rejected_records"}
    # The values are the load's file table's (one row per file, written with this file's bucket and version)...
    rendered = [" ".join(driver.rendered(sql, params).split()) for sql, params in statements if sql != "COMMIT"]
    files = next(sql for sql in rendered if sql.startswith("INSERT INTO stage_batch_files"))
    assert f"'{version}'" in files and "'rentals-raw'" in files
    # ... which every write takes them from: the snapshots and rejects directly, the facts by their stage.
    newest = next(sql for sql in rendered if sql.startswith("CREATE TEMPORARY TABLE stage_batch_fact_flats"))
    assert "b.version_id AS source_version_id" in newest and "b.bucket AS source_bucket" in newest
    for table, sql in written.items():
        lineage = "s." if table == "fact_flats" else "b."
        assert re.search(r"\bsource_version_id\b", sql), table
        assert re.search(rf"\b{lineage}(source_)?version_id\b", sql) and re.search(
            rf"\b{lineage}(source_)?bucket\b", sql
        )
