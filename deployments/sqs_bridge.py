"""The S3 → SQS → Prefect bridge: one Prefect event per new raw object version.

Prefect's open-source server has no S3 or SQS event source, so this long-running process long-polls
the queue that S3 notifies, confirms each object with a HEAD (event payloads are untrusted), and
posts an `aws.s3.object.created` event that the `ingest-file` deployment's trigger turns into a
flow run. A message is deleted only after the Prefect API accepted its events; one it cannot parse
is moved to the dead-letter queue with its reason. SIGTERM stops it after the message in hand.

    python -m deployments.sqs_bridge            # settings from the environment (.local/env locally)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from berlin_rentals.config import Settings
from berlin_rentals.errors import ObjectChanged, ObjectGone, is_retryable
from berlin_rentals.s3 import head_source, s3_client
from berlin_rentals.source import InvalidSource, SourceObject, decode_event_key

EVENT_NAME = "aws.s3.object.created"
log = logging.getLogger("sqs_bridge")


class UnparsableMessage(ValueError):
    """The message is not an S3 event notification we can read. It goes to the DLQ."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    etag: str | None
    size: int | None
    version_id: str | None
    sequencer: str | None


def _records(document: dict) -> list[dict]:
    if document.get("Type") == "Notification" and "Message" in document:  # delivered through SNS
        try:
            document = json.loads(document["Message"])
        except (TypeError, json.JSONDecodeError) as exc:
            raise UnparsableMessage(f"SNS message body is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise UnparsableMessage("SNS message body is not a JSON object")
    if document.get("Event") == "s3:TestEvent":  # sent once when a notification is configured
        return []
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        raise UnparsableMessage("no `Records` list in the message")
    return records


def parse_message(body: str) -> list[ObjectCreated]:
    """Every ObjectCreated record of one SQS message body; [] for a test event."""
    try:
        document = json.loads(body)
    except (TypeError, json.JSONDecodeError) as exc:
        raise UnparsableMessage(f"message body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UnparsableMessage("message body is not a JSON object")
    created = []
    for record in _records(document):
        try:
            if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith(
                "ObjectCreated"
            ):
                continue
            s3 = record["s3"]
            obj = s3["object"]
            size = obj.get("size")
            created.append(
                ObjectCreated(
                    bucket=str(s3["bucket"]["name"]),
                    key=decode_event_key(str(obj["key"])),
                    etag=obj.get("eTag") or obj.get("etag"),
                    size=int(size) if size is not None else None,
                    version_id=obj.get("versionId"),
                    sequencer=obj.get("sequencer"),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UnparsableMessage(f"malformed S3 record ({type(exc).__name__}: {exc})") from None
    return created


def prefect_event(source: SourceObject) -> dict[str, Any]:
    """The event for one object version. Its id is derived from (bucket, key, ETag): a redelivery is the same event."""
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source.uri}#{source.etag}")),
        "occurred": source.last_modified.isoformat(),
        "event": EVENT_NAME,
        "resource": {
            "prefect.resource.id": source.uri,
            "prefect.resource.name": source.key.rsplit("/", 1)[-1],
            "s3.bucket": source.bucket,
            "s3.key": source.key,
            "s3.etag": source.etag,
            "s3.size": str(source.size),
            "s3.version-id": source.version_id or "",
        },
        "payload": {
            "bucket": source.bucket,
            "key": source.key,
            "etag": source.etag,
            "size": source.size,
            "version_id": source.version_id,
        },
    }


def post_events(api_url: str, events: list[dict], api_key: str | None = None, timeout: float = 10.0) -> None:
    """POST /events answers 204 once the server has taken the events: only then may the message go."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.post(f"{api_url.rstrip('/')}/events", json=events, headers=headers, timeout=timeout)
    response.raise_for_status()


class Bridge:
    def __init__(
        self,
        settings: Settings,
        *,
        api_url: str,
        api_key: str | None = None,
        wait_seconds: int = 20,
        post: Callable[[list[dict]], None] | None = None,
    ):
        self.settings = settings
        self.s3 = s3_client(settings)
        import boto3

        self.sqs = boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region)
        self.queue_url = self.sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
        self.dlq_url = self.sqs.get_queue_url(QueueName=settings.dlq_name)["QueueUrl"]
        self.wait_seconds = wait_seconds
        self.post = post or (lambda events: post_events(api_url, events, api_key))
        self.stats = {"messages": 0, "events": 0, "ignored": 0, "dead_lettered": 0, "kept_for_retry": 0}

    def confirm(self, record: ObjectCreated) -> SourceObject | None:
        """HEAD the object: only a version that exists now, under the raw prefix, with this ETag, is announced."""
        if record.bucket != self.settings.raw_bucket:
            log.warning("ignored: s3://%s/%s is not in the raw bucket", record.bucket, record.key)
            return None
        try:
            return head_source(
                self.s3,
                record.bucket,
                record.key,
                record.etag,
                raw_bucket=self.settings.raw_bucket,
                prefix=self.settings.raw_prefix,
            )
        except (ObjectChanged, ObjectGone, InvalidSource) as exc:
            # A replaced or deleted version needs no run: a newer version has (or had) its own event.
            log.warning("ignored: %s", exc)
            return None

    def handle(self, message: dict) -> None:
        self.stats["messages"] += 1
        try:
            records = parse_message(message.get("Body", ""))
        except UnparsableMessage as reason:
            self.dead_letter(message, str(reason))
            return
        try:
            sources = [s for s in (self.confirm(r) for r in records) if s is not None]
            self.stats["ignored"] += len(records) - len(sources)
            if sources:
                self.post([prefect_event(s) for s in sources])
        except Exception as exc:  # noqa: BLE001 - S3 or Prefect unreachable: leave the message for redelivery
            self.stats["kept_for_retry"] += 1
            level = logging.WARNING if is_retryable(exc) or isinstance(exc, httpx.HTTPError) else logging.ERROR
            log.log(level, "kept message %s for redelivery: %s", message.get("MessageId"), exc)
            return
        for source in sources:
            log.info("event %s for %s (ETag %s)", EVENT_NAME, source.uri, source.etag)
        self.stats["events"] += len(sources)
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def dead_letter(self, message: dict, reason: str) -> None:
        log.error("moved message %s to the DLQ: %s", message.get("MessageId"), reason)
        self.sqs.send_message(
            QueueUrl=self.dlq_url,
            MessageBody=message.get("Body", "") or "<empty>",
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason[:1000]},
                "source-message-id": {"DataType": "String", "StringValue": message.get("MessageId", "unknown")},
            },
        )
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        self.stats["dead_lettered"] += 1

    def poll_once(self) -> int:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_seconds,
        ).get("Messages", [])
        for message in messages:
            self.handle(message)
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        log.info("bridge polling %s every %s s (long poll)", self.queue_url, self.wait_seconds)
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - the queue itself unreachable: wait and try again
                log.warning("polling failed: %s", exc)
                stop.wait(2)
        log.info("bridge stopped: %s", self.stats)


def main() -> None:
    parser = argparse.ArgumentParser(description="Forward S3 object-created notifications from SQS to Prefect events.")
    parser.add_argument(
        "--wait-seconds",
        type=int,
        default=int(os.environ.get("ETL_BRIDGE_WAIT_SECONDS", "20")),
        help="SQS long-poll wait (1-20 s); also bounds how long SIGTERM takes",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise SystemExit("PREFECT_API_URL is not set")
    bridge = Bridge(
        Settings.from_env(),
        api_url=api_url,
        api_key=os.environ.get("PREFECT_API_KEY"),
        wait_seconds=max(1, min(args.wait_seconds, 20)),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    bridge.run(stop)


if __name__ == "__main__":
    main()
