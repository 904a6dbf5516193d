"""The ETag cache where every run is a new container: the transform-stage step's result, a pointer to the
staged Parquet, persists on S3 (moto here), so a rerun of the same version in another process skips the
transform and the staging, and the load reads the staged Parquet back (on the stack: tests/stack/test_result_cache.py); here the pointer's
pickling, stack-free."""

from __future__ import annotations

import base64


def test_the_pointer_pickles_without_the_tables_through_prefects_serializer(sample_zip):
    """Stack-free: what Prefect's default serializer makes of the step's result, on the real sample."""
    from prefect.serializers import PickleSerializer

    from berlin_rentals.archive import iter_lines
    from berlin_rentals.model import STAGED_TABLES
    from berlin_rentals.staging import StagedBatch, Transformed
    from berlin_rentals.transform import transform_lines
    from berlin_rentals.warehouse.fit import fit_batch

    batch = fit_batch(transform_lines(iter_lines(sample_zip, str(sample_zip))))
    staged = StagedBatch("rentals-staging", "clean/x/etag=e/", {t: batch.rows(t) for t in STAGED_TABLES}, batch.tables)
    pointer = Transformed(staged=staged, stats=batch.stats)
    serializer = PickleSerializer()
    stored = serializer.dumps(pointer)
    back = serializer.loads(stored)
    assert back == pointer and back.staged.rows == staged.rows and back.staged.data is None
    assert staged.data is not None  # the process that staged it keeps its tables
    emails = {e for e in batch.tables["dim_agency"].column("email").to_pylist() if e}
    assert emails and len(stored) < 2000
    raw = base64.b64decode(stored)  # Prefect keeps the pickle base64-encoded
    assert not [e for e in emails if e.encode() in raw]
