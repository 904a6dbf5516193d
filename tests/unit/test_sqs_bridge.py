"""The bridge's reading of SQS messages: untrusted input in every shape S3 and SNS send."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.messages import ObjectCreated, ParsedMessage, parse_message


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
    assert parse_message(body).created == [
        ObjectCreated("rentals-raw", "raw/a bä.zip", "793fb4ae6d07bb5b55ea181ad1fed13a", 29979, None, "0A1B"),
        ObjectCreated("rentals-raw", "raw/c.zip", "793fb4ae6d07bb5b55ea181ad1fed13a", 29979, None, "0A1B"),
    ]


def test_sns_wrapped_notifications_are_unwrapped():
    inner = json.dumps({"Records": [s3_record("raw/x.zip")]})
    parsed = parse_message(json.dumps({"Type": "Notification", "Message": inner}))
    assert [o.key for o in parsed.created] == ["raw/x.zip"] and parsed.problems == []


def test_the_test_event_and_other_event_kinds_produce_nothing():
    for body in (
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "rentals-raw"},
        {"Records": [s3_record("raw/x.zip", event="ObjectRemoved:Delete")]},
    ):
        assert parse_message(json.dumps(body)) == ParsedMessage([], [])


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
    parsed = parse_message(body)
    assert parsed.created == [] and len(parsed.problems) == 1 and reason in parsed.problems[0]


def _with_object(**fields) -> dict:
    record = s3_record("raw/bad.zip")
    record["s3"]["object"].update(fields)
    return record


@pytest.mark.parametrize(
    "bad, reason",
    [
        # json.loads reads 1e400 as inf, and int(inf) raised OverflowError out of parse_message
        ('{"size": 1e400}', "`s3.object.size` is float"),
        # a number was passed on as the ETag and failed its .strip() in the HEAD: taken for an S3 outage
        ('{"eTag": 12345}', "`s3.object.eTag` is int, not a string"),
        ('{"key": ["raw/a.zip"]}', "`s3.object.key` is list"),
        ('{"size": -1}', "`s3.object.size` is -1"),
        ('{"versionId": {"a": 1}}', "`s3.object.versionId` is dict"),
    ],
)
def test_a_malformed_record_is_named_and_the_readable_records_beside_it_are_kept(bad, reason):
    record = _with_object(**json.loads(bad))
    body = json.dumps({"Records": [s3_record("raw/good.zip"), record, "not a record"]})
    parsed = parse_message(body)
    assert [o.key for o in parsed.created] == ["raw/good.zip"]
    assert parsed.problems[0].startswith("record 2: malformed S3 record") and reason in parsed.problems[0]
    assert parsed.problems[1] == "record 3: malformed S3 record (a record is str, not an object)"


def test_a_body_nested_too_deep_for_the_parser_is_unparsable_not_a_crash():
    """100,000 levels: json.loads raised RecursionError out of parse_message and aborted the whole poll."""
    for body in ("[" * 100_000 + "]" * 100_000, json.dumps({"Type": "Notification", "Message": "[" * 100_000})):
        parsed = parse_message(body)
        assert parsed.created == [] and "RecursionError" in parsed.problems[0]


# The values that broke the parser before (inf from 1e400, a number where a string belongs) are drawn
# often, not left to chance among all floats.
_edge = st.sampled_from([float("inf"), float("-inf"), float("nan"), 2**64, -1, 12345, True, "", [], {}])
_json = st.recursive(
    _edge | st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
_field = st.sampled_from(["key", "size", "eTag", "etag", "versionId", "sequencer"])


@st.composite
def _bodies(draw) -> str:
    """Valid notifications with fields swapped for any JSON value, records of any shape, any text."""
    kind = draw(st.sampled_from(["record", "record", "document", "text", "sns", "nested"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "nested":  # past the parser's recursion limit, or not
        depth = draw(st.sampled_from([10, 900, 50_000]))  # 50,000 x 5 bytes: under SQS's 256 KiB
        return draw(st.sampled_from(["[", '{"a":'])) * depth
    if kind == "document":
        return json.dumps(draw(_json))
    records = []
    for _ in range(draw(st.integers(1, 3))):
        # Mostly a key the bridge accepts, so the record's other fields reach the HEAD.
        record = s3_record(draw(st.sampled_from(["raw/a.zip", "raw/b+c.zip"]) | st.text(min_size=1, max_size=30)))
        for name, value in draw(st.dictionaries(_field, _json, max_size=3)).items():
            record["s3"]["object"][name] = value
        if draw(st.booleans()):
            record[draw(st.sampled_from(["s3", "eventName", "eventSource"]))] = draw(_json)
        records.append(record)
    body = json.dumps({"Records": records})
    return json.dumps({"Type": "Notification", "Message": body}) if kind == "sns" else body


@settings(max_examples=300, deadline=None)
@given(_bodies())
def test_no_body_raises_out_of_the_parser_and_what_it_reads_is_typed(body):
    parsed = parse_message(body)
    for created in parsed.created:
        assert isinstance(created.bucket, str) and isinstance(created.key, str)
        assert created.size is None or (type(created.size) is int and created.size >= 0)
        for optional in (created.etag, created.version_id, created.sequencer):
            assert optional is None or isinstance(optional, str)
    assert all(isinstance(problem, str) and problem for problem in parsed.problems)
