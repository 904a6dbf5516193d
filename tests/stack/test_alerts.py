"""The alerts end to end: the ingest's events (or their absence) -> the real Prefect server's automations ->
the custom-webhook notification block -> the stack's HTTP receiver, whose log is asserted.

One set of automations for the module, on a raw prefix of its own (so no other test's file or event
touches them), made by the same code as `make up`'s (deployments/automations.py); the missing hour is
shortened to Prefect's floor for a proactive trigger, 10 s. The ingests run in this process: the
events go to the server as a worker's would.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from berlin_rentals.config import AlertSettings, Settings
from berlin_rentals.synthetic import read_sample_records, zip_lines
from deployments.automations import CATCH_UP_DEPLOYMENT, ensure_automations
from flows.ingest import ingest_file
from flows.release import release_parked
from tests.helpers import query, upload, wait_for

# The server loads a new automation within seconds; a proactive one fires after `within` plus its 5 s
# evaluation period; a notification is one HTTP post. Generous for 2 busy cores.
ALERT_TIMEOUT = 120


def _received(log_path, *needles: str) -> list[dict]:
    """Bodies the receiver logged whose text contains every needle (as the JSON it was sent in)."""
    if not log_path.exists():
        return []
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        record = json.loads(line)
        body = record.get("body")
        text = json.dumps(body, ensure_ascii=False) if body is not None else ""
        if record.get("method") == "POST" and all(needle in text for needle in needles):
            found.append(body)
    return found


def _folder(key: str) -> str:
    """The upload's folder of its own (tests.helpers.upload): what tells this test's notifications apart."""
    return key.split("/")[-2]


def _wait_for_notification(log_path, *needles: str) -> dict:
    return wait_for(lambda: _received(log_path, *needles), ALERT_TIMEOUT, f"a notification with {needles}")[0]


@pytest.fixture(scope="module")
def alerts(deployed_stack, local_stack, stack_env):
    """The three automations for a prefix of this module's; deleted after, with the catch-up runs they made."""
    stack, _ = local_stack
    # Beside the raw prefix, not under it: the session's own automations (stack.deploy()) watch raw/*.
    prefix = f"alerts-{uuid.uuid4().hex[:8]}/"
    settings = AlertSettings.from_env(stack_env | {"ETL_RAW_PREFIX": prefix, "ETL_MISSING_HOUR_SECONDS": "10"})
    made_at = datetime.now(UTC)
    automations = {name.split(":")[0]: automation_id for name, automation_id, _ in ensure_automations(settings)}
    try:
        yield settings, automations, stack.log_dir / "receiver.log", made_at
    finally:
        with get_client(sync_client=True) as client:
            for automation_id in automations.values():
                client.delete_automation(automation_id)
            catch_up = client.read_deployment_by_name(CATCH_UP_DEPLOYMENT)
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[catch_up.id])))
            for run in runs:
                if run.created_by and run.created_by.id == automations["missing hour"]:
                    client.delete_flow_run(run.id)


@pytest.fixture
def prefixed(alerts, settings, monkeypatch) -> Settings:
    """A fresh warehouse schema (the `settings` fixture) and the module's raw prefix, as the flow reads them."""
    monkeypatch.setenv("ETL_RAW_PREFIX", alerts[0].raw_prefix)
    return Settings.from_env()


def test_a_parked_file_is_notified_with_its_key_reason_and_release(alerts, prefixed, s3):
    _, _, log, _ = alerts
    # A key as hostile as S3 allows (the pipeline refuses control characters): quotes, braces, a Slack
    # mention and markup. It must arrive as text, inside one JSON string, and not break the template.
    name = 'bad"}}{{ 7*7 }}<!channel>*x*_20190113_15.zip'
    key, etag = upload(s3, prefixed, name, b"this is not a zip archive")
    state = ingest_file(prefixed.raw_bucket, key, etag, return_state=True)
    assert state.is_failed()
    assert query(prefixed, "SELECT status FROM {schema}.load_ledger WHERE key = :k", k=key)[0].status == "parked"

    body = _wait_for_notification(log, "a raw file is parked", _folder(key))
    assert body["subject"] == "berlin-rentals: a raw file is parked"
    text = body["body"]
    uri = f"s3://{prefixed.raw_bucket}/{key}"
    # The key, quoted as JSON with <, > escaped: "<!channel>" cannot reach Slack as a mention.
    assert json.dumps(uri).replace("<", "\\u003c").replace(">", "\\u003e") in text
    assert "<!channel>" not in text and "{{ 7*7 }}" in text
    assert "BadArchive" in text  # the reason
    assert "python -m flows.release --parked --since " in text and "release-parked" in text
    assert 'after "1" attempt(s)' in text


def _half_rejected_zip() -> bytes:
    good = [json.dumps(record, ensure_ascii=False).encode() for record in read_sample_records()]
    return zip_lines("immobilienscout24_berlin_20190113_16.json", good + [b"{not json"] * len(good))


def test_a_file_over_the_reject_ratio_is_notified_and_still_loaded(alerts, prefixed, s3):
    _, _, log, _ = alerts
    key, etag = upload(s3, prefixed, "immobilienscout24_berlin_20190113_16.zip", _half_rejected_zip())
    state = ingest_file(prefixed.raw_bucket, key, etag, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded"  # half rejected: not above the default 0.5

    body = _wait_for_notification(log, "too many rejected lines", _folder(key))
    lines = len(read_sample_records()) * 2
    assert body["body"].startswith(f"{lines // 2} of {lines} lines of ")
    assert '(share "0.5000", alert above "0.0500")' in body["body"]
    assert "Its good lines go on to be loaded" in body["body"]
    assert query(prefixed, "SELECT COUNT(*) AS n FROM {schema}.rejected_records WHERE source_key = :k", k=key)[0].n


def test_above_the_max_reject_ratio_a_file_is_parked_and_released_like_any(alerts, prefixed, s3, monkeypatch):
    _, _, log, _ = alerts
    key, etag = upload(s3, prefixed, "immobilienscout24_berlin_20190113_17.zip", _half_rejected_zip())
    monkeypatch.setenv("ETL_MAX_REJECT_RATIO", "0.2")
    state = ingest_file(prefixed.raw_bucket, key, etag, return_state=True)
    assert state.is_failed()
    ledger = query(prefixed, "SELECT status, error FROM {schema}.load_ledger WHERE key = :k", k=key)
    assert ledger[0].status == "parked" and "RejectRatioExceeded" in ledger[0].error
    assert query(prefixed, "SELECT COUNT(*) AS n FROM {schema}.fact_flats")[0].n == 0  # nothing loaded

    rejects = _wait_for_notification(log, "too many rejected lines", _folder(key))
    assert "It is parked, not loaded" in rejects["body"]
    parked = _wait_for_notification(log, "a raw file is parked", _folder(key))
    assert "RejectRatioExceeded" in parked["body"] and "ETL_MAX_REJECT_RATIO=0.2" in parked["body"]

    # Released as the notification says (the release-parked flow), then ingested under a higher ratio.
    report = release_parked(since=datetime.now(UTC) - timedelta(hours=1))
    assert {"key": key, "etag": etag} in report["released"]
    monkeypatch.setenv("ETL_MAX_REJECT_RATIO", "0.6")
    state = ingest_file(prefixed.raw_bucket, key, etag, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded"
    assert query(prefixed, "SELECT status FROM {schema}.load_ledger WHERE key = :k", k=key)[0].status == "loaded"

    # force=true is the one-file override: the same version loads again despite the ratio.
    monkeypatch.setenv("ETL_MAX_REJECT_RATIO", "0.2")
    state = ingest_file(prefixed.raw_bucket, key, etag, True, return_state=True)
    assert state.is_completed() and state.result()["status"] == "loaded"


def test_a_missing_hour_is_notified_and_starts_a_catch_up(alerts):
    settings, automations, log, made_at = alerts
    scope = f"s3://{settings.raw_bucket}/{settings.raw_prefix}"
    # Nothing is ever announced under this prefix (no bridge runs here): after 10 s the proactive trigger fires.
    body = _wait_for_notification(log, "has no raw batch", scope)
    assert body["subject"].startswith("berlin-rentals: the hour up to ") and body["subject"].endswith(
        " UTC has no raw batch"
    )
    assert f"No raw batch arrived under {scope} in the 10 seconds up to " in body["body"]
    fired = datetime.strptime(body["subject"].split("up to ")[1][:16], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert made_at - timedelta(minutes=1) <= fired <= datetime.now(UTC)
    assert "python -m bridge.sqs_bridge --replay-dlq" in body["body"]

    def catch_up_runs():
        with get_client(sync_client=True) as client:
            catch_up = client.read_deployment_by_name(CATCH_UP_DEPLOYMENT)
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[catch_up.id])))
        return [r for r in runs if r.created_by and r.created_by.id == automations["missing hour"]]

    runs = wait_for(catch_up_runs, ALERT_TIMEOUT, "a catch-up run started by the missing-hour automation")
    assert runs[0].created_by.type == "AUTOMATION"
