"""The COMMITs and statements the Redshift target sends loading a week, one file a transaction and in batches,
counted through the recording DB-API driver (tests/recording_dbapi.py): no cluster needed."""

from __future__ import annotations

from pathlib import Path


def redshift_commits(path: Path, files: int, batch_max_files: int) -> dict:
    """COMMITs and statements the Redshift target sends for a backfill of `files` files, one per
    transaction (load_staged_batch, what a per-file load runs) and `batch_max_files` per transaction
    (load_staged_files, a load-batch's), recorded by tests/recording_dbapi.py in this process: no cluster,
    so counts, not seconds. Every file is `path` transformed once, under its own hour and ETag."""

    import sqlalchemy as sa

    import tests.recording_dbapi as driver
    from berlin_rentals.archive import iter_lines
    from berlin_rentals.model import STAGED_TABLES
    from berlin_rentals.staging import batch_manifest_key
    from berlin_rentals.transform import transform_lines
    from berlin_rentals.warehouse.engines import RedshiftTarget
    from berlin_rentals.warehouse.load import load_staged_batch, load_staged_files

    # As tests/unit/test_redshift_batch_statements.py builds them (`_files`, `_recorded_batch`).
    target = RedshiftTarget("berlin_rentals", "arn:aws:iam::123456789012:role/rentals-redshift-copy")
    batch = transform_lines(iter_lines(path, path.name))
    every = driver.staged_files(batch, files)
    engine = sa.create_engine("redshift+redshift_connector://loader@cluster:5439/rentals", module=driver)
    with engine.connect():  # the dialect's first-connect queries, before the counting starts
        pass

    def count(statements) -> tuple[int, int]:
        sqls = [sql for sql, _ in statements]
        return sqls.count("COMMIT"), sum(sql not in ("COMMIT", "ROLLBACK") for sql in sqls)

    driver.STATEMENTS.clear()
    for f in every:
        load_staged_batch(engine, target, f.source, f.staged, f.stats, flow_run_id="bench")
    one_commits, one_statements = count(driver.STATEMENTS)

    batch_commits, per_batch = 0, []
    for first in range(0, files, batch_max_files):
        part, batch_id = every[first : first + batch_max_files], f"bench-{first}"
        # What a cluster would answer: nothing loaded yet in the ledger, the counts a row per file.
        answers = driver.batch_answers([f.source.etag for f in part])
        manifests = {t: f"s3://rentals-staging/{batch_manifest_key('clean/', batch_id, t)}" for t in STAGED_TABLES}
        driver.STATEMENTS.clear()
        driver._ANSWERS[:0] = answers
        try:
            report = load_staged_files(engine, target, part, run_id=batch_id, manifests=manifests)
        finally:
            del driver._ANSWERS[: len(answers)]
        if len(report.loaded) != len(part):
            raise SystemExit(f"the recorded batch {batch_id} loaded {len(report.loaded)} of {len(part)} files")
        commits, statements = count(driver.STATEMENTS)
        batch_commits += commits
        per_batch.append(statements)
    driver.STATEMENTS.clear()
    return {
        "files": files,
        "batch_max_files": batch_max_files,
        "one_per_transaction": {
            "commits": one_commits,
            "commits_per_file": round(one_commits / files, 4),
            "statements_per_file": round(one_statements / files, 1),
        },
        "batched": {
            "commits": batch_commits,
            "commits_per_file": round(batch_commits / files, 4),
            "batches": len(per_batch),
            # The same statements whatever the batch's size: one COPY per table from its manifest.
            "statements_per_batch": sorted(set(per_batch)),
            "statements_per_file": round(sum(per_batch) / files, 2),
        },
    }
