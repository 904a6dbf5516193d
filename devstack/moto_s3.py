"""moto's server for S3 and SQS, and S3 across restarts (moto keeps it in memory; devstack/s3_snapshot.py)."""

from __future__ import annotations

import os
import sys

from devstack.processes import _environ

REGION = "eu-central-1"
# A local run takes seconds, not minutes: a message the bridge did not delete comes back after this.
LOCAL_VISIBILITY_TIMEOUT = 60
# moto accepts any key; nothing real is ever written to the env file.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


class MotoS3:
    """Starting moto, the buckets and queues on it, and saving/restoring S3 (a mixin of LocalStack)."""

    # ---- moto (S3 + SQS) ---------------------------------------------------------------------
    def _moto_healthy(self, port: str | None) -> bool:
        return self._http_healthy("moto", port, "/moto-api/")

    def _start_moto(self, remembered: str | None) -> int:
        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]

        def env(port: int) -> dict[str, str]:
            return dict(os.environ, MOTO_PORT=str(port))

        port = self._start_http("moto", "moto server", remembered, "/moto-api/", command, env)
        if port is None:
            return int(remembered)
        self._say(f"moto server (S3, SQS) on http://127.0.0.1:{port}")
        return port

    def _ensure_aws_resources(self, env: dict[str, str]) -> None:
        from berlin_rentals.config import ProvisioningSettings
        from provisioning.aws import ensure, staging_expire_prefixes

        # Retention, receives and results prefix as a user exported them; the rest is the stack's own.
        settings = ProvisioningSettings.from_env({**os.environ, **env})
        with _environ(LOCAL_CREDENTIALS):  # never sign requests to moto with whatever real keys are exported
            ensure(settings, visibility_timeout=LOCAL_VISIBILITY_TIMEOUT)
        self._say(
            f"buckets {env['ETL_RAW_BUCKET']}, {env['ETL_STAGING_BUCKET']}; queue {env['ETL_QUEUE_NAME']} "
            f"(DLQ {env['ETL_DLQ_NAME']}) notified of {env['ETL_RAW_BUCKET']}/{env['ETL_RAW_PREFIX']}*; "
            f"{', '.join(staging_expire_prefixes(settings))} in {env['ETL_STAGING_BUCKET']} expire after "
            f"{settings.staging_retention_days} days"
        )

    # ---- S3 across restarts (moto keeps it in memory) -------------------------------------------
    def _save_s3(self) -> None:
        """Snapshot moto's buckets and queued messages to `s3/` (in `down`, after the bridge and worker stopped)."""
        from devstack.s3_snapshot import take_snapshot

        previous = self._previous()
        failed = self.s3_snapshot / "snapshot-failed"
        if not self._moto_healthy(previous.get("LOCAL_MOTO_PORT")):
            if self._pid_file("moto").exists():
                self._say(
                    "WARNING: moto is not running, so S3 could not be saved; the next `make up` will say "
                    "what the warehouse's ledger lost"
                )
            return
        try:
            report = take_snapshot(
                previous["AWS_ENDPOINT_URL"],
                REGION,
                self.s3_snapshot,
                queues=[previous[key] for key in ("ETL_QUEUE_NAME", "ETL_DLQ_NAME") if previous.get(key)],
                source={"root": str(self.root)},
            )
        except Exception as error:  # noqa: BLE001 - `down` must still stop everything
            self.s3_snapshot.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{error}\n")
            self._say(f"WARNING: saving S3 failed ({error}); the next `make up` restores an older snapshot, if any")
            return
        failed.unlink(missing_ok=True)
        self._say(
            f"saved S3: {report.objects} objects ({report.bytes / 1e6:.1f} MB) in {report.buckets} buckets, "
            f"{report.messages} queued messages, to {self.s3_snapshot} ({report.seconds:.1f} s)"
        )
        for warning in report.warnings:
            self._say(f"WARNING: {warning}")

    def _s3_loss(self) -> str | None:
        """Why the S3 snapshot is not the state moto had when it stopped (None: `down` saved it)."""
        if self._pid_file("moto").exists():  # `down` removes it; still there: moto stopped some other way
            return "moto stopped without `make down` (killed, crashed, or the machine rebooted)"
        failed = self.s3_snapshot / "snapshot-failed"
        if failed.exists():
            return f"the last `make down` could not save S3 ({failed.read_text().strip()})"
        return None

    def _restore_s3(self, env: dict[str, str], loss: str | None) -> dict | None:
        """Into a moto server just started: the snapshot's buckets and objects, before any notification exists."""
        from devstack.s3_snapshot import read_manifest, restore_objects

        manifest = read_manifest(self.s3_snapshot)
        if manifest is None:
            if loss:
                self._say(f"WARNING: S3 starts empty: {loss}, and there is no snapshot to restore")
            return None
        report = restore_objects(env["AWS_ENDPOINT_URL"], REGION, self.s3_snapshot, manifest)
        self._say(
            f"restored S3 as `make down` saved it at {manifest['taken_at']}: {report.objects} objects "
            f"({report.bytes / 1e6:.1f} MB) in {report.buckets} buckets, same ETags ({report.seconds:.1f} s)"
        )
        if loss:
            self._say(f"WARNING: that snapshot is older than S3 was: {loss}; objects written after it are lost")
        for warning in report.warnings:
            self._say(f"WARNING: {warning}")
        return manifest

    def _restore_messages(self, env: dict[str, str], manifest: dict | None) -> None:
        from devstack.s3_snapshot import restore_messages

        if manifest and (sent := restore_messages(env["AWS_ENDPOINT_URL"], REGION, manifest)):
            self._say(f"{sent} messages waiting on the queues when the stack stopped are queued again")

    def _check_ledger_against_s3(self, env: dict[str, str], loss: str | None) -> None:
        """The warehouse remembers what S3 forgot: say so, loudly, and how to get a consistent stack again."""
        from devstack.s3_snapshot import loaded_but_missing

        try:
            missing, examples = loaded_but_missing(
                env["WAREHOUSE_URL"], env["WAREHOUSE_SCHEMA"], env["AWS_ENDPOINT_URL"], REGION
            )
        except Exception as error:  # noqa: BLE001 - a check, not a reason to fail `make up`
            self._say(f"WARNING: could not compare the ledger with S3: {error}")
            return
        if not missing:
            if loss:
                self._say("every object the warehouse ledger shows as loaded is in S3")
            return
        why = loss or "`make down` saved no S3 snapshot (the stack was stopped by a version that did not save S3?)"
        self._say(f"WARNING: S3 WAS LOST: {why}.")
        self._say(
            f"WARNING: the warehouse ledger ({env['WAREHOUSE_SCHEMA']}.load_ledger) shows {missing} loaded "
            f"object(s) that are not in S3, e.g. {', '.join(examples)}: reruns and catch-up cannot read them."
        )
        self._say(
            "WARNING: upload them again, or run `make reset` (deletes the warehouse, Prefect's database and "
            "the S3 snapshot) and `make up` to start from empty."
        )
