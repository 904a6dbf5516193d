"""The bridge's reading of SQS messages: untrusted input in every shape S3 and SNS send."""

from __future__ import annotations

import json

import pytest

from bridge.sqs_bridge import ObjectCreated, UnparsableMessage, parse_message


def s3_record(key: str, etag: str = "793fb4ae6d07bb5b55ea181ad1fed13a", event: str = "ObjectCreated:Put") -> dict:
    return {
        "eventSource": "aws:s3",
        "eventName": event,
        "s3": {
            "bucket": {"name": "rentals-raw"},
            "object": {"key": key, "size": 29979, "eTag": etag, "sequencer": "0A1B"},
        },
    }


def test_keys_are_url_decoded_and_every_record_is_read():
    body = json.dumps(
        {
            "Records": [
                s3_record("raw/a+b%C3%A4.zip"),
                s3_record("raw/c.zip", event="ObjectCreated:CompleteMultipartUpload"),
            ]
        }
    )
    assert parse_message(body) == [
        ObjectCreated("rentals-raw", "raw/a bä.zip", "793fb4ae6d07bb5b55ea181ad1fed13a", 29979, None, "0A1B"),
        ObjectCreated("rentals-raw", "raw/c.zip", "793fb4ae6d07bb5b55ea181ad1fed13a", 29979, None, "0A1B"),
    ]


def test_sns_wrapped_notifications_are_unwrapped():
    inner = json.dumps({"Records": [s3_record("raw/x.zip")]})
    assert [o.key for o in parse_message(json.dumps({"Type": "Notification", "Message": inner}))] == ["raw/x.zip"]


def test_the_test_event_and_other_event_kinds_produce_nothing():
    assert parse_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "rentals-raw"})) == []
    assert parse_message(json.dumps({"Records": [s3_record("raw/x.zip", event="ObjectRemoved:Delete")]})) == []


@pytest.mark.parametrize(
    "body, reason",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ("{}", "no `Records`"),
        (
            json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}),
            "malformed S3 record",
        ),
        (json.dumps({"Type": "Notification", "Message": "{broken"}), "SNS message body is not JSON"),
    ],
)
def test_anything_else_is_unparsable_with_a_reason(body, reason):
    with pytest.raises(UnparsableMessage, match=reason):
        parse_message(body)
