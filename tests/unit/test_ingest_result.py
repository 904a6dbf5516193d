"""How one ingest's result reads to a person: run name, state name, tags, closing line, failure line."""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import pyarrow as pa

from berlin_rentals.archive import BadArchive
from berlin_rentals.batch import TransformStats
from berlin_rentals.ingest_result import (
    IngestFailed,
    IngestResult,
    closing_sentence,
    explain_failure,
    is_expected,
    run_name,
    run_tags,
)
from berlin_rentals.lineage import lineage_row, rejected_rows, summary_markdown
from berlin_rentals.source import SourceObject
from berlin_rentals.staging import StagedBatch
from berlin_rentals.warehouse.load import LoadReport
from tasks.common import ExpectedErrorTracebacks

KEY = "raw/immobilienscout24_berlin_20190113_19.zip"
SOURCE = SourceObject("rentals-raw", KEY, "0" * 32, 1234, datetime(2019, 1, 13, 19, 5, tzinfo=UTC))


def loaded(rejected: int = 0, flagged: int = 0) -> IngestResult:
    stats = TransformStats(
        lines_read=11 + rejected,
        listings=11,
        rejected=rejected,
        rejected_by_reason=Counter({"not_json": rejected} if rejected else {}),
        flagged=flagged,
    )
    report = LoadReport("loaded", fact_inserted=3, fact_updated=8, snapshots_written=11, rejected=rejected)
    staged = StagedBatch("rentals-staging", "clean/v1/etag=x/", {"fact_flats": 11, "rejected_records": rejected})
    return IngestResult(
        "loaded",
        "rentals-raw",
        KEY,
        SOURCE.etag,
        source=SOURCE,
        stats=stats,
        staged=staged,
        report=report,
        seconds=1.234,
        step_seconds={"transform": 0.1, "load": 0.2},
    )


def failed(ledger: str, attempts: int, error: str, error_type: str) -> IngestResult:
    return IngestResult(
        "failed",
        "rentals-raw",
        KEY,
        SOURCE.etag,
        source=SOURCE,
        ledger=ledger,
        attempts=attempts,
        error=error,
        error_type=error_type,
    )


def test_a_run_is_named_after_its_batch_hour_or_its_file():
    assert run_name(KEY) == "ingest 20190113_19"
    assert run_name("raw/some export.zip") == "ingest some export.zip"
    # An untrusted key: no markup, no control characters, bounded length.
    crafted = run_name("raw/<script>alert(1)</script>\n" + "x" * 200 + ".zip")
    assert "<" not in crafted and "\n" not in crafted and len(crafted) <= 67


def test_each_outcome_has_tags_to_filter_by():
    assert run_tags(loaded()) == ["loaded"]
    assert run_tags(loaded(rejected=2, flagged=1)) == ["loaded", "rejects", "flagged"]
    assert run_tags(IngestResult("skipped", "rentals-raw", KEY, "e", ledger="loaded")) == ["skipped"]
    assert run_tags(failed("parked", 1, f"BadArchive: s3://rentals-raw/{KEY}: not a zip archive", "BadArchive")) == [
        "parked"
    ]
    assert run_tags(failed("failed", 1, "OperationalError: connection refused", "OperationalError")) == ["failed"]


def test_the_closing_line_is_a_sentence():
    assert closing_sentence(loaded(rejected=2)) == (
        f"s3://rentals-raw/{KEY} loaded in 1.23 s: 11 listings from 13 lines (3 new, 8 updated, 0 older than the "
        "warehouse kept as history), 2 lines rejected (not_json 2)."
    )
    skipped = IngestResult("skipped", "rentals-raw", KEY, "e", ledger="loaded")
    assert "was skipped: the ledger says loaded" in closing_sentence(skipped) and "force=true" in closing_sentence(
        skipped
    )


def test_a_version_that_stood_in_for_a_gone_one_is_said_in_the_closing_line():
    stood_in = replace(SOURCE, version_id="new", stood_in_for="old")
    sentence = closing_sentence(replace(loaded(), source=stood_in))
    assert sentence.startswith(closing_sentence(loaded()))
    unversioned = closing_sentence(replace(loaded(), source=replace(stood_in, version_id=None)))
    assert "the key's current object (it has no version id) has the same ETag" in unversioned
    assert sentence.endswith(
        f"Note: version old is gone; the key's current version new has the same ETag {SOURCE.etag} "
        "(the same bytes) and was read instead."
    )


def test_a_failure_is_one_line_naming_the_file_what_the_ledger_did_and_the_fix():
    parked = failed("parked", 1, f"BadArchive: s3://rentals-raw/{KEY}: not a zip archive", "BadArchive")
    assert explain_failure(parked) == (
        f"s3://rentals-raw/{KEY} could not be ingested: not a zip archive (BadArchive). Parked after 1 attempt: "
        "it will not be retried until it is released. Fix: upload a readable batch under the same key (a new ETag "
        "loads as a correction), or fix the object and rerun ingest-file with force=true."
    )
    retried = failed("failed", 2, "OperationalError: connection refused", "OperationalError")
    assert "Attempt 2 failed; the ledger will allow another" in explain_failure(retried)
    assert "catch-up retries it" in explain_failure(retried)


def test_ingest_failed_crosses_a_process_boundary_with_its_result():
    error = IngestFailed(failed("parked", 3, "ObjectGone: gone", "ObjectGone"))
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == "ObjectGone: gone" and again.result == error.result


def test_only_expected_errors_lose_their_traceback_in_the_logs():
    expected = IngestFailed(failed("parked", 1, "BadArchive: x", "BadArchive"))
    assert is_expected(BadArchive("x")) and is_expected(expected)
    # A mostly-garbage file is parked by default now: its traceback reached the catch-up's output (seen in
    # the README's own commands, tests/e2e/test_readme_commands.py).
    garbage = "RejectRatioExceeded: 1 of 1 lines rejected (100.0%), above ETL_MAX_REJECT_RATIO=0.5: not loaded"
    assert is_expected(IngestFailed(failed("parked", 1, garbage, "RejectRatioExceeded")))
    assert not is_expected(IngestFailed(failed("failed", 1, "OperationalError: x", "OperationalError")))
    assert not is_expected(KeyError("a bug"))

    def record(exc: BaseException, message: str = "failed") -> logging.LogRecord:
        try:
            raise exc
        except BaseException:  # noqa: BLE001
            import sys

            return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, message, (), sys.exc_info())

    quiet, loud = record(expected), record(KeyError("a bug"))
    assert ExpectedErrorTracebacks().filter(quiet) and ExpectedErrorTracebacks().filter(loud)
    assert quiet.exc_info is None and loud.exc_info is not None
    # Prefect's engine line for a failed run it raised out of: gone for an expected failure, kept for a bug.
    engine = "Engine execution exited with unexpected exception"
    assert not ExpectedErrorTracebacks().filter(record(expected, engine))
    assert ExpectedErrorTracebacks().filter(record(KeyError("a bug"), engine))


def test_the_lineage_row_folds_in_the_staged_objects_and_the_steps():
    row = lineage_row(loaded())
    assert row["staged_prefix"] == "s3://rentals-staging/clean/v1/etag=x/"
    assert row["staged_rows"] == "fact_flats 11, rejected_records 0"
    assert row["steps"] == "transform 0.100, load 0.200" and row["status"] == "loaded"
    assert lineage_row(failed("parked", 1, "BadArchive: x", "BadArchive"))["status"] == "failed (parked)"


def test_rejected_lines_show_reason_and_the_offending_value_never_the_whole_line():
    rejected = pa.table(
        {
            "member": ["a.json", "a.json"],
            "line_number": [3, 9],
            "reason": [
                "a.json line 3: invalid_value: Invalid decimal string - at `$.data.realEstate_baseRent`",
                "a.json line 9: not_json: the line is not valid JSON",
            ],
            "raw_line": ['{"ok": true, "data": {"id": "1", "realEstate_baseRent": "viel", "contact": "secret"}}', "{"],
            "raw_line_bytes": [80, 1],
        }
    )
    assert rejected_rows(rejected) == [
        {
            "member": "a.json",
            "line": 3,
            "reason": "invalid_value",
            "value": "viel",
            "detail": "Invalid decimal string - at `$.data.realEstate_baseRent`",
        },
        {"member": "a.json", "line": 9, "reason": "not_json", "value": None, "detail": "the line is not valid JSON"},
    ]
    assert len(rejected_rows(rejected, limit=1)) == 1


def test_a_crafted_key_cannot_close_the_summary_code_span():
    crafted = IngestResult("skipped", "rentals-raw", "raw/x` **boom** `.zip", "e", ledger="loaded")
    assert "`s3://rentals-raw/raw/x' **boom** '.zip`" in summary_markdown(crafted, "closing")


def test_the_summary_says_when_rejected_lines_lost_their_raw_text():
    result = loaded(rejected=3)
    result.stats.rejected_raw_omitted = 2
    assert "2 rejected lines kept without their raw text" in summary_markdown(result, "closing")
    assert "without their raw text" not in summary_markdown(loaded(rejected=3), "closing")
