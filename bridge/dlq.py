"""The dead-letter queue back onto the queue, once a message's cause is fixed: `python -m bridge.sqs_bridge
--replay-dlq [--dry-run]`, each message reported with the reason it was dead-lettered for."""

from __future__ import annotations

from bridge.messages import parse_message


def _names(body: str) -> tuple[list[str], str | None]:
    """The objects a message names, and why it cannot be read, in whole or in part (None if it can)."""
    parsed = parse_message(body)
    names = [f"s3://{r.bucket}/{r.key} (ETag {r.etag})" for r in parsed.created]
    return names, "; ".join(parsed.problems) or None


def replay_dlq(sqs, queue_url: str, dlq_url: str, *, dry_run: bool = False, hold_seconds: int = 300) -> list[dict]:
    """Move the DLQ's messages back to the queue, once their cause is fixed; one report per message.

    A message the bridge dead-lettered carries its reason; one that SQS's redrive moved has none, only
    its receive count (the API rejected its events, or it crashed the bridge, that many times). A body
    the current parser still cannot read stays in the DLQ: on the queue it would only come back here.
    Each message is sent to the queue before it is deleted from the DLQ, so a crash in between
    duplicates it, which the bridge and the ledger absorb, and loses none. Messages looked at are
    hidden while the DLQ is read (so each is seen once) and handed back at the end unless moved.
    """
    reports, hand_back = [], []
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=hold_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            attributes = message.get("MessageAttributes", {})
            body = message.get("Body", "")
            objects, unparsable = _names(body)
            reason = attributes.get("reason", {}).get("StringValue") or (
                "redrive: received {} times without being deleted".format(
                    message.get("Attributes", {}).get("ApproximateReceiveCount", "?")
                )
            )
            report = {
                "message_id": attributes.get("source-message-id", {}).get("StringValue") or message["MessageId"],
                "dlq_message_id": message["MessageId"],
                "objects": objects,
                "reason": reason,
            }
            if unparsable:
                report["action"] = f"kept: still unparsable ({unparsable})"
                hand_back.append(message)
            elif dry_run:
                report["action"] = "would move"
                hand_back.append(message)
            else:
                sqs.send_message(
                    QueueUrl=queue_url,
                    MessageBody=body,
                    MessageAttributes={
                        "replayed-from-dlq": {"DataType": "String", "StringValue": message["MessageId"]},
                    },
                )
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                report["action"] = "moved"
            reports.append(report)
    for message in hand_back:
        sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return reports
