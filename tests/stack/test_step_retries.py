"""The one retry table: every step is a Prefect task run with IO_STEP's retries, in the ingest-file flow and
in the catch-up alike, and Prefect's engine applies them with our retry condition: a transient S3 or
database error is tried again, a data error never (another try of a file that is not a zip reads the
same bytes)."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy.exc
from prefect import flow, task

from berlin_rentals.archive import BadArchive
from tasks.common import IO_STEP


def transient() -> Exception:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection"))


class Flaky:
    """Fails with the given errors in turn, then returns 'done'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def run_as_a_step(flaky: Flaky):
    """The callable as an IO step (no delay between tries, the rest as IO_STEP says), in a flow run."""
    step = task(name="flaky-step", **(IO_STEP | {"retry_delay_seconds": 0, "retry_jitter_factor": None}))(flaky)

    @flow(name="retry-probe")
    def probe() -> bool:
        return step(return_state=True).is_completed()

    return probe()


@pytest.mark.stack
def test_a_transient_error_is_retried_by_prefects_engine(settings):
    flaky = Flaky(transient(), transient())
    assert run_as_a_step(flaky) is True
    assert flaky.calls == 3


@pytest.mark.stack
def test_retries_stop_after_the_tables_count(settings):
    flaky = Flaky(*[transient() for _ in range(IO_STEP["retries"] + 2)])
    assert run_as_a_step(flaky) is False
    assert flaky.calls == IO_STEP["retries"] + 1


@pytest.mark.stack
def test_a_data_error_is_not_retried(settings):
    flaky = Flaky(BadArchive("s3://b/k.zip: not a zip archive"))
    assert run_as_a_step(flaky) is False
    assert flaky.calls == 1
