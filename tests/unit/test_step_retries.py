"""The one retry table: every step is a Prefect task run with IO_STEP's retries, in the ingest-file flow and
in the catch-up alike, and Prefect's engine applies them with our retry condition: a transient S3 or
database error is tried again, a data error never (another try of a file that is not a zip reads the
same bytes). Here the table each step carries; Prefect's engine applying it: tests/stack/test_step_retries.py."""

from __future__ import annotations

from berlin_rentals.config import retry_delays
from berlin_rentals.errors import retry_condition
from tasks.common import IO_STEP


def test_every_step_of_the_pipeline_retries_by_the_one_table():
    from tasks.extract import extract, inspect_source
    from tasks.load import begin_attempt, ledger_status, load, record_failure
    from tasks.transform import transform_stage

    for step in (inspect_source, extract, ledger_status, begin_attempt, transform_stage, load, record_failure):
        assert step.retry_condition_fn is retry_condition and step.retries == IO_STEP["retries"], step.name
        assert step.retry_delay_seconds == retry_delays(), step.name
