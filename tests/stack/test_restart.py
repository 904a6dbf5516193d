"""A restart of the local stack is consistent: `down` then `up` keeps S3 as the warehouse remembers it.

moto's server keeps S3 and SQS in memory; the warehouse and Prefect's database are on disk. `down`
saves S3 and the queued messages to `<root>/s3/`, `up` puts them back before the bridge starts and
before the raw bucket notifies anyone, so a restart starts no ingest run. `reset` deletes the state.

Here S3 and the queues across a restart, moto only. The slow tests (tests/e2e/test_restart.py) share one
stack of their own (every service, as `make up` starts it, in a temporary root, driven through the CLI).
"""

from __future__ import annotations

import json
import os

import pytest

from devstack.local_stack import LocalStack
from tests.helpers import aws_client

# ---- S3 and the queues across a restart, moto only (no stack of the session) ------------------


@pytest.mark.stack  # starts moto of its own
def test_down_saves_s3_and_the_queues_and_up_puts_them_back_unannounced(tmp_path, capsys):
    stack = LocalStack(tmp_path / "local", services=("s3",))
    env = stack.up()
    try:
        s3, sqs = aws_client("s3", env), aws_client("sqs", env)
        raw, staging = env["ETL_RAW_BUCKET"], env["ETL_STAGING_BUCKET"]
        queue = sqs.get_queue_url(QueueName=env["ETL_QUEUE_NAME"])["QueueUrl"]
        dlq = sqs.get_queue_url(QueueName=env["ETL_DLQ_NAME"])["QueueUrl"]
        odd = env["ETL_RAW_PREFIX"] + "odd dir/ä b+c%2F.zip"
        small = s3.put_object(
            Bucket=raw,
            Key=odd,
            Body=b"PK small",
            ContentType="application/zip",
            Metadata={"origin": "test"},
            CacheControl="no-cache",
        )["ETag"]
        empty = s3.put_object(Bucket=staging, Key="clean/empty", Body=b"")["ETag"]
        sqs.purge_queue(QueueUrl=queue)  # those two puts' notifications: forwarded, say, before `down`
        upload = s3.create_multipart_upload(Bucket=staging, Key="clean/big", ContentType="text/plain")["UploadId"]
        parts = [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(
                    Bucket=staging, Key="clean/big", UploadId=upload, PartNumber=n, Body=bytes([n]) * size
                )["ETag"],
            }
            for n, size in ((1, 5 * 1024 * 1024), (2, 5 * 1024 * 1024 + 1), (3, 7))
        ]
        big = s3.complete_multipart_upload(
            Bucket=staging, Key="clean/big", UploadId=upload, MultipartUpload={"Parts": parts}
        )["ETag"]
        sqs.send_message(QueueUrl=queue, MessageBody='{"waiting": "for the bridge"}')
        sqs.send_message(
            QueueUrl=dlq,
            MessageBody="garbage",
            MessageAttributes={"reason": {"DataType": "String", "StringValue": "not JSON"}},
        )

        stack.down()
        manifest = json.loads((tmp_path / "local" / "s3" / "manifest.json").read_text())
        assert [len(b["objects"]) for b in manifest["buckets"]] == [1, 2]
        # A body is stored once per content; an ETag that does not come back is reported.
        entry = next(o for o in manifest["buckets"][1]["objects"] if o["key"] == "clean/empty")
        entry["etag"] = "0" * 32
        (tmp_path / "local" / "s3" / "manifest.json").write_text(json.dumps(manifest))
        capsys.readouterr()

        env = stack.up()
        out = capsys.readouterr().out
        assert "restored S3" in out and "3 objects" in out
        assert (
            "WARNING: s3://rentals-staging/clean/empty: restored with ETag d41d8cd98f00b204e9800998ecf8427e, it had 000"
            in out
        )
        assert "2 messages waiting on the queues" in out
        s3, sqs = aws_client("s3", env), aws_client("sqs", env)
        head = s3.head_object(Bucket=raw, Key=odd)
        assert (head["ETag"], head["ContentType"], head["Metadata"], head["CacheControl"]) == (
            small,
            "application/zip",
            {"origin": "test"},
            "no-cache",
        )
        assert s3.get_object(Bucket=raw, Key=odd)["Body"].read() == b"PK small"
        assert s3.head_object(Bucket=staging, Key="clean/big")["ETag"] == big  # same parts, same multipart ETag
        assert (
            s3.get_object(Bucket=staging, Key="clean/big")["Body"].read()
            == b"\1" * 5242880 + b"\2" * 5242881 + b"\3" * 7
        )
        assert s3.head_object(Bucket=staging, Key="clean/empty")["ETag"] == empty
        # The restore went in before the notification: only the message that waited is on the queue
        # (and the test event S3 sends when a notification is configured, which the bridge ignores).
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
        assert [m["Body"] for m in got if "s3:TestEvent" not in m["Body"]] == ['{"waiting": "for the bridge"}']
        got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
        assert [(m["Body"], m["MessageAttributes"]["reason"]["StringValue"]) for m in got] == [("garbage", "not JSON")]
        # The notification works again for new uploads.
        s3.put_object(Bucket=raw, Key=env["ETL_RAW_PREFIX"] + "new.zip", Body=b"new")
        assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2).get("Messages")
    finally:
        stack.down()
    # The second down saved what was there then; nothing is left of bodies no manifest names.
    bodies = list((tmp_path / "local" / "s3" / "objects").iterdir())
    assert len(bodies) == 4 and not [b for b in bodies if b.name.startswith(".partial")]


@pytest.mark.stack  # starts moto of its own
def test_up_after_moto_died_restores_the_last_snapshot_and_says_it_may_be_old(tmp_path, capsys):
    stack = LocalStack(tmp_path / "local", services=("s3",))
    env = stack.up()
    aws_client("s3", env).put_object(Bucket=env["ETL_RAW_BUCKET"], Key="kept.zip", Body=b"1")
    stack.down()
    env = stack.up()
    aws_client("s3", env).put_object(Bucket=env["ETL_RAW_BUCKET"], Key="lost.zip", Body=b"2")
    try:
        os.kill(stack._running_pid("moto"), 9)
        capsys.readouterr()
        env = stack.up()
        out = capsys.readouterr().out
        assert "WARNING: that snapshot is older than S3 was: moto stopped without `make down`" in out
        keys = [
            o["Key"] for o in aws_client("s3", env).list_objects_v2(Bucket=env["ETL_RAW_BUCKET"]).get("Contents", [])
        ]
        assert keys == ["kept.zip"]
    finally:
        stack.down()
