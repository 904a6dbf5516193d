"""The Redshift side of the loader, checked without a cluster: what COPY it would send, and what it refuses."""

from __future__ import annotations

import pytest

from berlin_rentals.batch import output_variant
from berlin_rentals.staging import StagedBatch, staged_prefix
from berlin_rentals.warehouse.engines import PostgresTarget, RedshiftTarget, target_for

ROLE = "arn:aws:iam::123456789012:role/rentals-redshift-copy"
ETAG = "793fb4ae6d07bb5b55ea181ad1fed13a"


def staged() -> StagedBatch:
    return StagedBatch(bucket="rentals-staging", prefix=staged_prefix("clean/", ETAG), rows={"fact_flats": 11})


def test_copy_reads_this_etags_parquet_with_the_iam_role():
    sql = RedshiftTarget(schema="berlin_rentals", iam_role_arn=ROLE).copy_sql("fact_flats", staged())
    assert sql.split() == [
        "COPY",
        "stage_fact_flats",
        "FROM",
        f"'s3://rentals-staging/clean/{output_variant()}/etag={ETAG}/fact_flats/'",
        "IAM_ROLE",
        f"'{ROLE}'",
        "FORMAT",
        "AS",
        "PARQUET",
    ]


@pytest.mark.parametrize("role", [None, "", "arn:aws:iam::123:role/x", f"{ROLE}' CREDENTIALS 'x"])
def test_copy_refuses_anything_but_a_role_arn(role):
    with pytest.raises(ValueError, match="IAM role"):
        RedshiftTarget(schema="s", iam_role_arn=role).copy_sql("fact_flats", staged())


def test_copy_refuses_a_location_that_could_break_out_of_the_literal():
    bad = StagedBatch(bucket="rentals-staging", prefix="clean/x' IAM_ROLE 'y/", rows={})
    with pytest.raises(ValueError, match="unexpected location"):
        RedshiftTarget(schema="s", iam_role_arn=ROLE).copy_sql("fact_flats", bad)


def test_the_url_picks_the_engine():
    assert isinstance(target_for("postgresql+psycopg://u@h/db", "s"), PostgresTarget)
    assert isinstance(target_for("redshift+psycopg2://u@h:5439/db", "s", ROLE), RedshiftTarget)
    with pytest.raises(ValueError, match="unsupported"):
        target_for("sqlite:///x.db", "s")


def test_a_trailing_newline_is_no_part_of_a_role_a_location_or_a_manifest():
    """`$` matches before a final newline: each COPY piece is checked as a full match (the staged prefix
    always ends in its table name, so only the manifest URI could end in one)."""
    with pytest.raises(ValueError, match="IAM role"):
        RedshiftTarget(schema="s", iam_role_arn=ROLE + "\n").copy_sql("fact_flats", staged())
    target = RedshiftTarget(schema="s", iam_role_arn=ROLE)
    with pytest.raises(ValueError, match="unexpected location"):
        target.copy_sql("fact_flats", StagedBatch(bucket="rentals-staging\n", prefix=staged().prefix, rows={}))
    with pytest.raises(ValueError, match="unexpected manifest"):
        target.batch_copy_sql("fact_flats", "s3://rentals-staging/clean/x.manifest\n")
