"""The catch-up's pool of staging processes, which outlives the death of one of them.

A process of a ProcessPoolExecutor that dies (killed for memory, a segfault in a C extension) breaks the
whole pool: every file it held, running or queued, fails with BrokenProcessPool, and so does every file
submitted after. Those files did nothing wrong, and their attempts are counted. So here a broken pool is
replaced, and each file it held runs again, alone, in a process of its own (one after the other, under the
attempt already counted for it: no second attempt). Only a file whose process dies while it is alone has
killed it: that one gets `StagingProcessDied` back, for the caller to record as its failure.
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any

from prefect import Task
from prefect.futures import as_completed
from prefect.logging import get_run_logger
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from berlin_rentals.catch_up import RawObject
from berlin_rentals.config import Settings
from berlin_rentals.ingest_result import FAILED, IngestFailed, IngestResult
from berlin_rentals.source import Version
from berlin_rentals.warehouse.attempts import Failure
from tasks.alerts import emit_file_parked
from tasks.load import record_failure


class StagingProcessDied(RuntimeError):
    """The process staging this file died while it ran alone (killed: out of memory?). Retryable."""


Work = tuple[RawObject, Task, dict[str, Any]]


def _result(future) -> Any:
    try:
        return future.result(raise_on_failure=False)
    except Exception as exc:  # noqa: BLE001 - e.g. the API refused the task run: still one file's failure
        return exc


def _broke(result: Any) -> bool:
    return isinstance(result, BrokenProcessPool)


class StagingPool:
    """`workers` processes (one: a thread, no process to start); `submit` a task for a file, `next_done` the
    next (file, result), where a result is what the task returned, the exception it raised, or
    StagingProcessDied."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._runner: TaskRunner | None = None
        self._futures: dict[Any, Work] = {}
        self._broken: list[Work] = []
        self._ready: list[tuple[RawObject, Any]] = []

    def _new_runner(self, workers: int) -> TaskRunner:
        # One file at a time needs no other process (and no interpreter start-up of several seconds).
        in_processes = self.workers > 1
        runner = ProcessPoolTaskRunner(max_workers=workers) if in_processes else ThreadPoolTaskRunner(max_workers=1)
        return runner.__enter__()

    def __enter__(self) -> StagingPool:
        self._runner = self._new_runner(self.workers)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._runner is not None:
            self._runner.__exit__(*exc_info)
            self._runner = None

    @property
    def pending(self) -> int:
        return len(self._futures) + len(self._broken) + len(self._ready)

    def submit(self, step: Task, params: dict[str, Any], obj: RawObject) -> None:
        assert self._runner is not None, "submit inside `with StagingPool(...)`"
        self._futures[self._runner.submit(step, params)] = (obj, step, params)

    def next_done(self) -> tuple[RawObject, Any]:
        while True:
            if self._ready:
                return self._ready.pop(0)
            if not self._futures:
                if not self._broken:
                    raise LookupError("nothing was submitted that has not been returned")
                self._recover()
                continue
            future = next(as_completed(list(self._futures)))
            obj, step, params = self._futures.pop(future)
            result = _result(future)
            if _broke(result):
                self._broken.append((obj, step, params))  # its result once the pool is whole again
                continue
            return obj, result

    def _recover(self) -> None:
        """Every future of the broken pool has failed: a new pool, and each of its files again, alone."""
        logger = get_run_logger()
        logger.warning(
            "a staging process died (killed: out of memory?), which broke the pool: its %d files run again, "
            "each alone in a process of its own, under the attempt already counted for it",
            len(self._broken),
        )
        self.__exit__(None, None, None)
        solo: TaskRunner | None = None
        for obj, step, params in self._broken:
            solo = solo or self._new_runner(1)
            result = _result(solo.submit(step, params))
            if _broke(result):
                solo.__exit__(None, None, None)
                solo = None
                logger.warning("s3://…/%s: its staging process died again, this time alone", obj.key)
                result = StagingProcessDied(
                    f"the process staging {obj.key} died twice, the second time staging it alone "
                    "(killed: out of memory? a file this large may need a larger worker)"
                )
            self._ready.append((obj, result))
        if solo is not None:
            solo.__exit__(None, None, None)
        self._broken.clear()
        self._runner = self._new_runner(self.workers)


def record_process_death(settings: Settings, obj: RawObject, attempt: str, exc: StagingProcessDied) -> IngestFailed:
    """The file's failure, under the attempt counted for it: retryable (a larger worker may stage it), so it
    is parked only after its attempts, as any other failure."""
    began = datetime.now(UTC)
    error = f"{type(exc).__name__}: {exc}"
    ledger, attempts = record_failure(
        settings, Version(settings.raw_bucket, obj.key, obj.etag), Failure(error), attempt
    )
    result = IngestResult(
        FAILED,
        settings.raw_bucket,
        obj.key,
        obj.etag,
        ledger=ledger,
        attempts=attempts,
        error=error,
        error_type=type(exc).__name__,
        attempt=attempt,
    )
    if result.parked:
        emit_file_parked(result, began)
    return IngestFailed(result)
