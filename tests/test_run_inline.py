"""run_inline: a step's function with the step's own retry settings, as Prefect's task engine applies them.

The catch-up calls every step this way inside one task run per file; if run_inline drifted from the
task's settings (count, delays, condition), a backfill would retry differently from the event path.
"""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy.exc
from prefect import task
from prefect.utilities.math import lower_clamp_multiple

from berlin_rentals.archive import BadArchive
from berlin_rentals.errors import retry_condition
from tasks import common
from tasks.common import IO_STEP, run_inline


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


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr(common.time, "sleep", delays.append)
    return delays


def step_of(fn, **options):
    return task(name="step", **(IO_STEP | options))(fn)


def test_a_transient_error_is_retried_with_the_task_s_own_delays(slept):
    flaky = Flaky(transient(), transient())
    step = step_of(flaky, retry_delay_seconds=[2, 8, 30], retry_jitter_factor=None)
    assert run_inline(step) == "done"
    assert flaky.calls == 3 and slept == [2.0, 8.0]


def test_retries_stop_after_the_task_s_count_and_the_last_delay_repeats(slept):
    flaky = Flaky(*[transient() for _ in range(5)])
    step = step_of(flaky, retries=4, retry_delay_seconds=[1, 3], retry_jitter_factor=None)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        run_inline(step)
    assert flaky.calls == 5 and slept == [1.0, 3.0, 3.0, 3.0]  # as Prefect: the list's last value repeats


def test_a_data_error_is_not_retried(slept):
    flaky = Flaky(BadArchive("s3://b/k.zip: not a zip archive"))
    with pytest.raises(BadArchive):
        run_inline(step_of(flaky))
    assert flaky.calls == 1 and slept == []


def test_jitter_stays_within_the_task_s_factor(slept):
    flaky = Flaky(*[transient() for _ in range(3)])
    step = step_of(flaky, retries=3, retry_delay_seconds=[10], retry_jitter_factor=0.2)
    assert run_inline(step) == "done"
    # Prefect's clamped Poisson jitter: at most 10 * 1.2, at least the lower clamp it derives from that.
    low = 10 * lower_clamp_multiple(1.2)
    assert len(slept) == 3 and all(low <= delay <= 12.0 for delay in slept), slept


def test_the_io_steps_use_the_retry_condition_run_inline_knows():
    from tasks.extract import extract, inspect_source
    from tasks.load import ledger_status, load
    from tasks.transform import transform_stage

    for step in (inspect_source, extract, ledger_status, transform_stage, load):
        assert step.retry_condition_fn is retry_condition and step.retries == 3, step.name
    other = task(name="other", retries=1, retry_condition_fn=lambda *a: True)(lambda: None)
    with pytest.raises(TypeError, match="knows retry_condition only"):
        run_inline(other)
