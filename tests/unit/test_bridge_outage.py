"""The bridge through a Prefect outage, and the DLQ replay: SQS and S3 on moto, the Prefect API a real HTTP
boundary (first a port where nothing listens, then a server answering 503, then one that takes events)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from berlin_rentals.config import BridgeSettings
from bridge.sqs_bridge import Bridge
from provisioning.aws_resources import EventResources, ensure_event_resources

RAW, STAGING, QUEUE, DLQ = "rentals-raw", "rentals-staging", "rentals-raw-events", "rentals-raw-events-dlq"
REGION = "eu-central-1"


@pytest.fixture
def aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("s3", region_name=REGION), boto3.client("sqs", region_name=REGION)


AUTH_STRING = "bridge:not-a-real-secret"


class FakePrefectApi(ThreadingHTTPServer):
    """A Prefect server with basic auth, as Prefect's client meets it: 401 without the credentials;
    GET /csrf-token says CSRF protection is off (the server's default); POST /events: 503 while `down`,
    else 204 and the events kept."""

    def __init__(self, port: int):
        self.down = True
        self.events: list[dict] = []
        self.refused = 0
        self.unauthenticated = 0
        expected = "Basic " + base64.b64encode(AUTH_STRING.encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def _answer(handler, status: int, body: bytes = b"") -> None:  # noqa: N805
                handler.send_response(status)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def _authenticated(handler) -> bool:  # noqa: N805
                if handler.headers.get("Authorization") == expected:
                    return True
                self.unauthenticated += 1
                handler._answer(401, b'{"exception_message": "Unauthorized"}')
                return False

            def do_GET(handler):  # noqa: N805
                if handler._authenticated():
                    handler._answer(422, b'{"detail": "CSRF protection is disabled."}')

            def do_POST(handler):  # noqa: N805 - the server is `self` here
                body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
                if not handler._authenticated():
                    return
                if self.down:
                    self.refused += 1
                    handler.send_response(503)
                else:
                    self.events += json.loads(body)
                    handler.send_response(204)
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", port), Handler)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _s3_message(key: str, etag: str) -> str:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": RAW}, "object": {"key": key, "size": 3, "eTag": etag}},
    }
    return json.dumps({"Records": [record]})


def _count(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _wait(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def _event_resources(max_receive_count: int) -> dict:
    """The queue, its DLQ and the raw bucket's notification, with a 1 s visibility: receives come fast."""
    wanted = EventResources(
        raw_bucket=RAW,
        raw_prefix="raw/",
        staging_bucket=STAGING,
        queue_name=QUEUE,
        dlq_name=DLQ,
        visibility_timeout=1,
        max_receive_count=max_receive_count,
    )
    return ensure_event_resources(wanted, endpoint_url=None, region=REGION)


def test_a_prefect_outage_longer_than_the_redrive_loses_nothing_and_dead_letters_nothing(aws):
    s3, sqs = aws
    # Visibility 1 s and 3 receives before redrive: SQS's own DLQ move happens after ~3 s of redeliveries;
    # the outage lasts 4.5 s (1.5 s nothing listening, 3 s answering 503): only the bridge can keep them.
    # The objects exist before the notification does: only the messages sent below are in play.
    s3.create_bucket(Bucket=RAW, CreateBucketConfiguration={"LocationConstraint": REGION})
    etags = {
        f"raw/b{i}.zip": s3.put_object(Bucket=RAW, Key=f"raw/b{i}.zip", Body=b"abc")["ETag"].strip('"')
        for i in range(3)
    }
    created = _event_resources(max_receive_count=3)
    sqs.purge_queue(QueueUrl=created["queue_url"])  # moto's s3:TestEvent
    for key, etag in etags.items():
        sqs.send_message(QueueUrl=created["queue_url"], MessageBody=_s3_message(key, etag))
    sqs.send_message(QueueUrl=created["queue_url"], MessageBody="not json")

    port = _free_port()
    settings = BridgeSettings.from_env({"ETL_BRIDGE_BACKOFF_SECONDS": "0.5", "ETL_BRIDGE_BACKOFF_MAX_SECONDS": "2"})
    bridge = Bridge(settings, api_url=f"http://127.0.0.1:{port}", auth_string=AUTH_STRING, wait_seconds=1)
    stop = threading.Event()
    runner = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    runner.start()
    api = None
    try:
        time.sleep(1.5)  # nothing listens on the port
        api = FakePrefectApi(port)
        threading.Thread(target=api.serve_forever, daemon=True).start()
        time.sleep(3)  # the server answers 503
        # None of the three is in the DLQ (the unparsable one may be, or may wait for the API with the rest).
        assert _count(sqs, created["dlq_url"]) <= 1, "only the unparsable message belongs in the DLQ"
        assert api.refused >= 2, "the bridge kept trying the API during the outage"
        api.down = False
        assert _wait(lambda: len(api.events) >= 3, 20), f"events after the outage: {api.events}"
        assert _wait(lambda: _count(sqs, created["queue_url"]) == 0, 10)
    finally:
        stop.set()
        runner.join(10)
        if api:
            api.shutdown()
    assert sorted(e["payload"]["key"] for e in api.events) == sorted(etags)
    assert api.unauthenticated == 0, "every request of the bridge carries the API's credentials"
    assert _count(sqs, created["dlq_url"]) == 1
    [dead] = sqs.receive_message(QueueUrl=created["dlq_url"], MessageAttributeNames=["All"])["Messages"]
    assert dead["Body"] == "not json"
    assert "not JSON" in dead["MessageAttributes"]["reason"]["StringValue"]


def test_replay_dlq_moves_fixed_messages_back_and_reports_each(aws, monkeypatch, capsys):
    s3, sqs = aws
    s3.create_bucket(Bucket=RAW, CreateBucketConfiguration={"LocationConstraint": REGION})
    created = _event_resources(max_receive_count=1)
    sqs.purge_queue(QueueUrl=created["queue_url"])
    queue, dlq = created["queue_url"], created["dlq_url"]
    # 1. moved by SQS's redrive: received once and never deleted (the API rejected its events, say)
    redriven = sqs.send_message(QueueUrl=queue, MessageBody=_s3_message("raw/a.zip", "e1"))["MessageId"]
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    time.sleep(1.2)
    assert not sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages")  # redrive moved it
    # 2. dead-lettered by a bridge whose parser has since been fixed; 3. still unparsable
    for body, source_id, reason in [
        (_s3_message("raw/b.zip", "e2"), "m-2", "malformed S3 record (KeyError: 'size')"),
        ("not json", "m-3", "message body is not JSON"),
    ]:
        sqs.send_message(
            QueueUrl=dlq,
            MessageBody=body,
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason},
                "source-message-id": {"DataType": "String", "StringValue": source_id},
            },
        )

    monkeypatch.delenv("WAREHOUSE_URL", raising=False)  # the bridge never needs the warehouse
    monkeypatch.setattr("sys.argv", ["sqs_bridge", "--replay-dlq"])
    from bridge.sqs_bridge import main

    main()
    reports = {r["message_id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(reports) == {redriven, "m-2", "m-3"}
    assert reports[redriven]["objects"] == ["s3://rentals-raw/raw/a.zip (ETag e1)"]
    assert reports[redriven]["reason"].startswith("redrive: received")
    assert reports[redriven]["action"] == "moved"
    assert reports["m-2"] == {
        "message_id": "m-2",
        "dlq_message_id": reports["m-2"]["dlq_message_id"],
        "objects": ["s3://rentals-raw/raw/b.zip (ETag e2)"],
        "reason": "malformed S3 record (KeyError: 'size')",
        "action": "moved",
    }
    assert reports["m-3"]["action"].startswith("kept: still unparsable")

    back = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert sorted(m["Body"] for m in back) == sorted([_s3_message("raw/a.zip", "e1"), _s3_message("raw/b.zip", "e2")])
    [kept] = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert kept["Body"] == "not json"


def test_one_receive_of_hostile_messages_dead_letters_each_with_its_reason_and_announces_the_rest(aws):
    """A body that broke the parser (1e400, nesting 100,000 deep) aborted poll_once: the rest of the receive
    waited out its visibility and the bad one was redelivered until SQS's redrive moved it without a reason.
    A numeric eTag was taken for an S3 outage and kept, so the valid record beside it was never announced."""
    s3, sqs = aws
    s3.create_bucket(Bucket=RAW, CreateBucketConfiguration={"LocationConstraint": REGION})
    etags = {
        key: s3.put_object(Bucket=RAW, Key=key, Body=b"abc")["ETag"].strip('"')
        for key in ("raw/first.zip", "raw/beside.zip", "raw/last.zip")
    }
    created = _event_resources(max_receive_count=5)
    queue, dlq = created["queue_url"], created["dlq_url"]
    sqs.purge_queue(QueueUrl=queue)

    def record(key: str, **fields) -> dict:
        body = json.loads(_s3_message(key, etags.get(key, "0" * 32)))["Records"][0]
        body["s3"]["object"].update(fields)
        return body

    oversized = json.dumps({"Records": [record("raw/x.zip")]}).replace('"size": 3', '"size": 1e400')
    bodies = [
        _s3_message("raw/first.zip", etags["raw/first.zip"]),
        oversized,
        "[" * 100_000 + "]" * 100_000,
        json.dumps({"Records": [record("raw/beside.zip"), record("raw/y.zip", eTag=12345)]}),
        _s3_message("raw/last.zip", etags["raw/last.zip"]),
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    events: list[dict] = []
    bridge = Bridge(BridgeSettings.from_env({}), api_url="http://unused.invalid", post=events.extend, wait_seconds=1)
    received = 0
    while received < len(bodies):
        polled = bridge.poll_once()
        assert polled, "a message was left hidden instead of handled"
        received += polled

    assert sorted(e["payload"]["key"] for e in events) == ["raw/beside.zip", "raw/first.zip", "raw/last.zip"]
    assert _count(sqs, queue) == 0
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in dead)
    assert len(reasons) == 3, reasons
    assert "RecursionError" in reasons[0]
    assert reasons[1] == "record 1: malformed S3 record (`s3.object.size` is float, not a byte count)"
    assert reasons[2] == "record 2: malformed S3 record (`s3.object.eTag` is int, not a string)"
    assert bridge.stats["source_failures"] == 0, "no message was taken for an S3 outage"


def test_no_generated_body_raises_out_of_a_poll_and_none_is_left_in_the_queue(aws):
    """Any body: the poll handles it (announced, ignored, or dead-lettered with a reason at once), never
    raises, and never leaves it to come back. Bodies from tests/unit/test_sqs_bridge.py's generator."""
    from hypothesis import HealthCheck, given, settings

    from tests.unit.test_sqs_bridge import _bodies

    s3, sqs = aws
    s3.create_bucket(Bucket=RAW, CreateBucketConfiguration={"LocationConstraint": REGION})
    etag = s3.put_object(Bucket=RAW, Key="raw/a.zip", Body=b"abc")["ETag"].strip('"')
    created = _event_resources(max_receive_count=5)
    queue, dlq = created["queue_url"], created["dlq_url"]
    sqs.purge_queue(QueueUrl=queue)
    events: list[dict] = []
    bridge = Bridge(BridgeSettings.from_env({}), api_url="http://unused.invalid", post=events.extend, wait_seconds=0)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_bodies())
    def poll(body: str) -> None:
        sqs.send_message(QueueUrl=queue, MessageBody=body or " ")
        dead_before = bridge.stats["unparsable"]
        assert bridge.poll_once() == 1
        assert _count(sqs, queue) == 0, f"left in the queue: {body[:200]!r}"
        if bridge.stats["unparsable"] > dead_before:
            [message] = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
            assert message["MessageAttributes"]["reason"]["StringValue"]
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])

    poll()
    sqs.send_message(QueueUrl=queue, MessageBody=_s3_message("raw/a.zip", etag))  # and a good one still goes
    bridge.poll_once()
    assert events and events[-1]["payload"]["key"] == "raw/a.zip"
    assert bridge.stats["source_failures"] == 0
