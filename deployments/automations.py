"""The alerts, as Prefect automations on the server: created or updated by name, idempotently.

    python -m deployments.automations                       # the three automations, to ETL_NOTIFICATION_BLOCK
    python -m deployments.automations --webhook-url URL     # first (re)create that custom-webhook block at URL

- missing hour: no `aws.s3.object.created` event under the raw prefix for ETL_MISSING_HOUR_SECONDS (65 min)
  -> a notification naming the hour, and a run of `catch-up`;
- parked file: the ingest's `rentals.file.parked` event -> a notification with the key, the reason and how
  to release it;
- too many rejects: `rentals.file.rejects-above-ratio` (above ETL_REJECT_ALERT_RATIO) -> a notification.

prefect.yaml cannot declare them: a deployment trigger runs its own deployment with the event, and a
missing hour is no event at all but a proactive trigger; so they are made here through Prefect's client
(which authenticates as every other client does). `make up` runs this with the local receiver's URL.
Needs PREFECT_API_URL and the catch-up deployment (deploy first).

Event payloads and S3 keys are untrusted: every value taken from an event is rendered with `tojson`, a
quoted JSON string with <, >, & and ' escaped, so no key can end a sentence, open a Slack link or a
mention, or reach a shell: the release commands in the text carry only the event's server-checked time.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.events import AutomationCore, EventTrigger, Posture, RunDeployment, SendNotification

from berlin_rentals.config import AlertSettings
from tasks.alerts import FILE_PARKED, REJECTS_ABOVE_RATIO

CATCH_UP_DEPLOYMENT = "catch-up/catch-up"
LOCAL_BLOCK_SLUG = "custom-webhook"
TAG = "berlin-rentals"
# The event's own time, printed by the server: no payload text gets into a command an operator pastes.
_SINCE = "{{ event.occurred.strftime('%Y-%m-%dT%H:%M') }}+00:00"


def _literal(text: str) -> str:
    """A setting's text as a Jinja string expression: a prefix with braces in it stays text."""
    return "{{ " + json.dumps(text) + " }}"


def _scope(settings: AlertSettings) -> str:
    return f"s3://{settings.raw_bucket}/{settings.raw_prefix}"


def _duration(seconds: int) -> str:
    return f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"


def _q(expression: str) -> str:
    """An untrusted value of the event, rendered as a quoted JSON string (null when absent)."""
    return "{{ (" + expression + ")|default(none)|tojson }}"


def _label(name: str) -> str:
    return _q(f"event.resource[{name!r}]")


def _trigger(settings: AlertSettings, event: str, posture: Posture, within: timedelta) -> EventTrigger:
    return EventTrigger(
        match={"prefect.resource.id": f"{_scope(settings)}*"},
        expect={event},
        posture=posture,
        threshold=1,
        within=within,
    )


def missing_hour_name(settings: AlertSettings) -> str:
    return f"missing hour: {_scope(settings)}"


def missing_hour(settings: AlertSettings, block_id: UUID, catch_up_id: UUID) -> AutomationCore:
    scope = _scope(settings)
    window = _duration(settings.missing_hour_seconds)
    fired = "{{ firing.triggered.strftime('%Y-%m-%d %H:%M') }}"
    return AutomationCore(
        name=missing_hour_name(settings),
        description=f"No new object under {scope} for {window}: notify, and run the catch-up.",
        tags=[TAG],
        trigger=_trigger(
            settings, "aws.s3.object.created", Posture.Proactive, timedelta(seconds=settings.missing_hour_seconds)
        ),
        actions=[
            SendNotification(
                block_document_id=block_id,
                subject=f"berlin-rentals: the hour up to {fired} UTC has no raw batch",
                body=(
                    f"No raw batch arrived under {_literal(scope)} in the {window} up to {fired} UTC: "
                    "the hour before it is missing. {% if event %}The last one seen was "
                    + _q("event.resource.id")
                    + ", at {{ event.occurred.strftime('%Y-%m-%d %H:%M') }} UTC. {% endif %}"
                    "A catch-up run was started: it ingests any object of the last day whose event was lost. "
                    "If the producer is late, the file is ingested when it lands; if its notification is on "
                    "the dead-letter queue, replay it: python -m bridge.sqs_bridge --replay-dlq"
                ),
            ),
            RunDeployment(source="selected", deployment_id=catch_up_id),
        ],
    )


def _on_event(
    settings: AlertSettings, block_id: UUID, name: str, description: str, event: str, subject: str, body: str
):
    """An automation that notifies once per event of `event` under the raw prefix."""
    return AutomationCore(
        name=f"{name}: {_scope(settings)}",
        description=description,
        tags=[TAG],
        trigger=_trigger(settings, event, Posture.Reactive, timedelta(0)),
        actions=[SendNotification(block_document_id=block_id, subject=subject, body=body)],
    )


def file_parked(settings: AlertSettings, block_id: UUID) -> AutomationCore:
    return _on_event(
        settings,
        block_id,
        "parked file",
        f"An object under {_scope(settings)} is parked (out of attempts, unreadable, or too many rejects).",
        FILE_PARKED,
        "berlin-rentals: a raw file is parked",
        f"Parked: {_q('event.resource.id')} (ETag {_label('etag')}) after {_label('attempts')} attempt(s); "
        f"it is not ingested again until it is released.\nReason: {_label('reason')}\n"
        f"Once the cause is fixed, release it: python -m flows.release --parked --since {_SINCE} "
        "--dry-run lists what that releases; run it again without --dry-run (or run the "
        f"release-parked deployment with since {_SINCE}): the next catch-up ingests it with its "
        "attempts back. Or rerun its ingest-file run with force=true.",
    )


def rejects_above_ratio(settings: AlertSettings, block_id: UUID) -> AutomationCore:
    return _on_event(
        settings,
        block_id,
        "too many rejects",
        f"More than {settings.reject_alert_ratio:.1%} of a file's lines under {_scope(settings)} were rejected "
        "(ETL_REJECT_ALERT_RATIO).",
        REJECTS_ABOVE_RATIO,
        "berlin-rentals: too many rejected lines in a raw file",
        f"{_q('event.payload.rejected')} of {_q('event.payload.lines')} lines of {_q('event.resource.id')} "
        f"(ETag {_label('etag')}) were rejected (share {_label('ratio')}, alert above {_label('alert-ratio')}); "
        f"by reason: {_label('reasons')}.\n"
        "{% if event.resource['parked'] == 'true' %}It is parked, not loaded "
        "(above ETL_MAX_REJECT_RATIO): a parked-file alert follows with how to release it."
        "{% else %}Its good lines go on to be loaded (its ingest run says whether they were); the rejected "
        "ones are kept in rejected_records. After a transform fix, run the replay-rejects deployment for it."
        "{% endif %}",
    )


def ensure_webhook_block(settings: AlertSettings, url: str) -> UUID:
    """The custom-webhook block ETL_NOTIFICATION_BLOCK names, posting {"subject", "body"} as JSON to `url`.

    Each value is one whole placeholder, so the block substitutes it as a value and httpx encodes it:
    a key with quotes or braces cannot break the JSON."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    slug, _, name = settings.notification_block.partition("/")
    if slug != LOCAL_BLOCK_SLUG:
        raise SystemExit(f"--webhook-url makes a {LOCAL_BLOCK_SLUG} block; ETL_NOTIFICATION_BLOCK names a {slug}")
    block = CustomWebhookNotificationBlock(
        name=name, url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}, timeout=10
    )
    return block.save(name, overwrite=True)


def _block_id(settings: AlertSettings) -> UUID:
    from prefect.blocks.core import Block

    try:
        return Block.load(settings.notification_block)._block_document_id
    except ValueError as exc:
        raise SystemExit(
            f"the notification block {settings.notification_block!r} (ETL_NOTIFICATION_BLOCK) does not exist: "
            "create it first (README, Operating it)"
        ) from exc


def ensure_automations(settings: AlertSettings) -> list[tuple[str, UUID, str]]:
    """(name, id, 'created' | 'updated') of each alert; an automation of the same name is replaced in place."""
    block_id = _block_id(settings)
    done = []
    with get_client(sync_client=True) as client:
        catch_up_id = client.read_deployment_by_name(CATCH_UP_DEPLOYMENT).id
        wanted = [
            missing_hour(settings, block_id, catch_up_id),
            file_parked(settings, block_id),
            rejects_above_ratio(settings, block_id),
        ]
        for automation in wanted:
            existing = client.read_automations_by_name(automation.name)
            if existing:
                # Paused in the UI stays paused: an update restates what the alert does, not whether it is on.
                client.update_automation(existing[0].id, automation.model_copy(update={"enabled": existing[0].enabled}))
                for duplicate in existing[1:]:
                    client.delete_automation(duplicate.id)
                done.append((automation.name, existing[0].id, "updated"))
            else:
                done.append((automation.name, client.create_automation(automation), "created"))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--webhook-url", help="(re)create ETL_NOTIFICATION_BLOCK as a custom-webhook block posting here"
    )
    args = parser.parse_args(argv)
    settings = AlertSettings.from_env()
    if args.webhook_url:
        ensure_webhook_block(settings, args.webhook_url)
        print(f"notification block {settings.notification_block} posts to {args.webhook_url}")
    for name, automation_id, done in ensure_automations(settings):
        print(f"automation {name!r} {done} ({automation_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
