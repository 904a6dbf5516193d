"""Attempts are counted before the heavy work, once per run, and a configuration error is not the file's fault."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest


# A role ARN with a trailing newline passed re.match(...$) here, to be refused only by the COPY.
@pytest.mark.parametrize("role", [None, "arn:aws:iam::123456789012:role/rentals-redshift-copy\n"])
def test_a_missing_or_malformed_redshift_iam_role_is_a_configuration_error(role):
    from berlin_rentals.config import ConfigError, Settings
    from berlin_rentals.errors import is_config_error, is_retryable
    from berlin_rentals.source import SourceObject
    from tasks.load import begin_attempt

    settings = Settings(
        warehouse_url="redshift+redshift_connector://loader@cluster.invalid:5439/rentals", redshift_iam_role_arn=role
    )
    source = SourceObject("rentals-raw", "raw/a.zip", "a" * 32, 1, datetime(2019, 1, 13, tzinfo=UTC))
    # Before any heavy work (and before any connection): the attempt would only end in the COPY.
    with pytest.raises(ConfigError, match="REDSHIFT_IAM_ROLE_ARN") as refused:
        begin_attempt.fn(settings, source, "run-1", False)
    assert is_config_error(refused.value) and not is_retryable(refused.value)
