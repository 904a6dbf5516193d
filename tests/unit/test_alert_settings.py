"""The alerts' settings and templates, stack-free: what a bad setting says, and that an event's untrusted
values cannot break a notification (rendered by the Prefect server's own template renderer)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from uuid import uuid4

import pytest
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.utilities.user_templates import render_user_template_sync

from berlin_rentals.batch import TransformStats
from berlin_rentals.config import AlertSettings, ConfigError, Settings
from deployments.automations import file_parked, missing_hour, rejects_above_ratio
from tasks.alerts import FILE_PARKED, reject_ratio

# The pipeline's one required setting (it reads the ratios); the alerts' own settings need no warehouse.
PIPELINE = {"WAREHOUSE_URL": "postgresql+psycopg://loader@warehouse.invalid/rentals"}


def test_alert_settings_default_and_parse():
    settings, alerts = Settings.from_env(PIPELINE), AlertSettings.from_env({})
    assert (settings.reject_alert_ratio, settings.max_reject_ratio, alerts.missing_hour_seconds) == (0.05, 0.5, 3900)
    assert alerts.notification_block == "custom-webhook/berlin-rentals-alerts" and alerts.reject_alert_ratio == 0.05
    tuned = Settings.from_env(PIPELINE | {"ETL_MAX_REJECT_RATIO": "0.2", "ETL_REJECT_ALERT_RATIO": "0"})
    assert (tuned.max_reject_ratio, tuned.reject_alert_ratio) == (0.2, 0.0)


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("ETL_MAX_REJECT_RATIO", "5%", "must be a number"),
        ("ETL_REJECT_ALERT_RATIO", "5", "between 0 and 1"),
        ("ETL_NOTIFICATION_BLOCK", "berlin-rentals-alerts", "<block type slug>/<block name>"),
        ("ETL_MISSING_HOUR_SECONDS", "5", "at least 10"),
    ],
)
def test_a_bad_alert_setting_says_what_it_should_be(name, value, says):
    reader = AlertSettings if name in AlertSettings.variables() else Settings
    with pytest.raises(ConfigError, match=says):
        reader.from_env(PIPELINE | {name: value})


def test_reject_ratio_of_an_empty_file_is_zero():
    assert reject_ratio(TransformStats()) == 0.0
    assert reject_ratio(TransformStats(lines_read=20, rejected=3)) == 0.15


HOSTILE_KEY = 'raw/x/a"b}}{% raw %}{{ 7*7 }}<!channel> <https://evil|click> `$(id)`_20190113_15.zip'


def _event(**labels: str) -> ReceivedEvent:
    return ReceivedEvent(
        occurred=datetime(2026, 12, 1, 10, 5, tzinfo=UTC),
        event=FILE_PARKED,
        resource={"prefect.resource.id": f"s3://rentals-raw/{HOSTILE_KEY}", **labels},
        payload={"rejected": 3, "lines": 20},
        id=uuid4(),
    )


@pytest.mark.parametrize("make", [file_parked, rejects_above_ratio])
def test_an_event_with_a_hostile_key_renders_as_quoted_text(make):
    # A prefix with braces in it stays text too: it is pasted into the template as a Jinja string.
    settings = AlertSettings.from_env({"ETL_RAW_PREFIX": "raw/{{x}}/"})
    action = make(settings, uuid4()).actions[0]
    event = _event(etag="e" * 32, attempts="3", reason='BadArchive: "x"\n<!here>', ratio="0.15", parked="false")
    text = render_user_template_sync(action.body, {"event": event})
    assert (
        '"s3://rentals-raw/raw/x/a\\"b}}{% raw %}{{ 7*7 }}\\u003c!channel\\u003e \\u003chttps://evil|click\\u003e'
        in text
    )
    assert "<" not in text and ">" not in text  # no Slack mention or link can be formed
    assert "49" not in text.replace("e" * 32, "")


def test_a_missing_label_renders_as_null_not_a_failed_notification():
    action = rejects_above_ratio(AlertSettings.from_env({}), uuid4()).actions[0]
    text = render_user_template_sync(action.body, {"event": _event()})
    assert "(share null, alert above null)" in text


def test_the_missing_hour_names_the_hour_and_the_last_file_seen():
    action = missing_hour(AlertSettings.from_env({}), uuid4(), uuid4()).actions[0]
    firing = SimpleNamespace(triggered=datetime(2026, 12, 1, 11, 10, tzinfo=UTC))
    subject = render_user_template_sync(action.subject, {"event": None, "firing": firing})
    assert subject == "berlin-rentals: the hour up to 2026-12-01 11:10 UTC has no raw batch"
    body = render_user_template_sync(action.body, {"event": _event(), "firing": firing})
    assert "in the 65 minutes up to 2026-12-01 11:10 UTC" in body
    assert 'The last one seen was "s3://rentals-raw/raw/x/' in body and "at 2026-12-01 10:05 UTC" in body
