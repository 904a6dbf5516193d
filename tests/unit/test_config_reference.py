"""The settings: one place that reads the environment, one parser per kind of value, and a reference
(docs/configuration.md) that lists exactly what the settings classes read (stack-free).

Everything here is collected from berlin_rentals.config (COMPONENTS and their declared fields), not from
a list kept by hand: a variable added to a class without a row in the reference fails here.
"""

from __future__ import annotations

import os
import re
from dataclasses import MISSING
from pathlib import Path

import pytest

from berlin_rentals.config import COMPONENTS, ConfigError, DeployFileSettings, Settings

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "configuration.md"
SHIPPED = ("berlin_rentals", "flows", "tasks", "bridge", "deployments", "provisioning")
# The pipeline's one required setting, for the cases that read the pipeline's settings.
REQUIRED = {"WAREHOUSE_URL": "postgresql+psycopg://loader@warehouse.invalid/rentals"}


def declared() -> dict[str, tuple[list[str], object]]:
    """Each variable: the components that read it (in COMPONENTS' order) and the first one's field."""
    found: dict[str, tuple[list[str], object]] = {}
    for component in COMPONENTS:
        for name, f in component.variables().items():
            found.setdefault(name, ([], f))[0].append(component.component)
    return found


def documented_default(f) -> str:
    if f.metadata["doc_default"]:
        return f.metadata["doc_default"]
    default = f.default
    if default is MISSING:
        return "required"
    if isinstance(default, tuple):
        return "`" + ",".join(f"{d:g}" for d in default) + "`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def reference_rows() -> dict[str, list[str]]:
    """The rows of the reference's variables table: name -> [read by, default, accepts, meaning]."""
    text = REFERENCE.read_text()
    table = text[text.index("## Variables\n") :].split("\n## ")[0]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| `([A-Z0-9_]+)` \|(.*)\|$", line)
        if match:
            name = match.group(1)
            assert name not in rows, f"{name} is listed twice"
            rows[name] = [cell.strip() for cell in match.group(2).split(" | ")]
    return rows


def test_the_reference_lists_exactly_the_variables_the_settings_read():
    rows, variables = reference_rows(), declared()
    assert sorted(rows) == sorted(variables)
    for name, (readers, f) in variables.items():
        read_by, default, accepts, meaning = rows[name]
        assert read_by == ", ".join(readers), name
        assert default == documented_default(f), name
        assert accepts == f.metadata["kind"].accepts, name
        assert meaning, name


def test_the_reference_names_each_component_and_its_class():
    text = REFERENCE.read_text()
    for component in COMPONENTS:
        assert f"| {component.component} | `{component.__name__}` |" in text


def test_the_placeholders_of_prefect_yaml_are_declared():
    used = set(re.findall(r"\{\{ \$([A-Z0-9_]+) \}\}", (REPO / "prefect.yaml").read_text()))
    assert used == set(DeployFileSettings.variables())


def test_no_shipped_code_reads_the_environment_but_the_config_package():
    reads = re.compile(r"\bos\.environ\b|\bgetenv\(|\benviron\.get\(")
    found = [
        f"{path.relative_to(REPO)}:{n}"
        for folder in SHIPPED
        for path in sorted((REPO / folder).rglob("*.py"))
        if "config" not in path.relative_to(REPO).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if reads.search(line)
    ]
    assert not found, found


@pytest.mark.parametrize("component", [c for c in COMPONENTS if c is not Settings], ids=lambda c: c.component)
def test_no_component_but_the_pipeline_needs_the_warehouse(component):
    assert component.from_env({}) == component()


def test_the_pipeline_without_the_warehouse_says_which_variable_is_missing():
    with pytest.raises(ConfigError, match="^WAREHOUSE_URL is not set"):
        Settings.from_env({})


TYPED = sorted(
    {
        (component, name, value)
        for component in COMPONENTS
        for name, f in component.variables().items()
        for value in f.metadata["kind"].refused
    },
    key=lambda case: (case[0].component, case[1], case[2]),
)


def test_every_number_flag_and_list_is_covered():
    # Every numeric, boolean or list setting is one of the typed kinds (the table below covers them all).
    untyped = {
        name
        for component in COMPONENTS
        for name, f in component.variables().items()
        if not f.metadata["kind"].refused and f.default is not MISSING and not isinstance(f.default, str | type(None))
    }
    assert not untyped, untyped


@pytest.mark.parametrize(("component", "name", "value"), TYPED, ids=[f"{c.component}-{n}={v}" for c, n, v in TYPED])
def test_a_bad_value_is_a_config_error_naming_the_variable_and_the_value(component, name, value):
    with pytest.raises(ConfigError) as refused:
        component.from_env(REQUIRED | {name: value})
    message = str(refused.value)
    assert message.startswith(f"{name} must be ") and message.endswith(f", got {value!r}"), message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ETL_MAX_ATTEMPTS": "x"}, "ETL_MAX_ATTEMPTS must be an integer, got 'x'"),
        ({"ETL_MAX_ATTEMPTS": "0"}, "ETL_MAX_ATTEMPTS must be at least 1, got '0'"),
        ({"ETL_REJECT_ALERT_RATIO": "5"}, "ETL_REJECT_ALERT_RATIO must be between 0 and 1 (0.05 is 5%), got '5'"),
        (
            {"ETL_MASK_PERSONAL_DATA": "ture"},
            "ETL_MASK_PERSONAL_DATA must be one of 1, true, yes, on or 0, false, no, off, got 'ture'",
        ),
        ({"ETL_RAW_BUCKET": "Raw_Bucket"}, "ETL_RAW_BUCKET must be a valid S3 bucket name"),
    ],
)
def test_the_message_says_what_the_variable_accepts(env, message):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(REQUIRED | env)
    assert str(refused.value).startswith(message)


def test_the_defaults_are_those_of_before():
    settings = Settings.from_env(REQUIRED)
    assert (settings.max_attempts, settings.attempt_stale_seconds, settings.retry_delays) == (3, 1800, (2.0, 8.0, 30.0))
    assert (settings.batch_max_files, settings.batch_max_records, settings.fanout_files) == (24, 50_000, 500)
    assert (settings.raw_prefix, settings.staging_prefix, settings.reports_prefix) == ("raw/", "clean/", "reports/")
    assert (settings.max_inflate_ratio, settings.reject_alert_ratio, settings.max_reject_ratio) == (100.0, 0.05, 0.5)
    assert settings.aws_max_attempts == 4 and settings.mask_personal_data is False
    # A blank prefix is the whole bucket; a blank number is unset.
    blank = Settings.from_env(REQUIRED | {"ETL_STAGING_PREFIX": "", "ETL_MAX_ATTEMPTS": " "})
    assert (blank.staging_prefix, blank.max_attempts) == ("", 3)


def test_a_value_built_in_code_is_held_to_the_same_rules():
    with pytest.raises(ConfigError, match="^ETL_MAX_ATTEMPTS must be at least 1, got 0$"):
        Settings(warehouse_url=REQUIRED["WAREHOUSE_URL"], max_attempts=0)
    with pytest.raises(ConfigError, match="^WAREHOUSE_SCHEMA must be a plain"):
        Settings(warehouse_url=REQUIRED["WAREHOUSE_URL"], warehouse_schema="berlin_rentals\n")


def test_the_steps_retry_delays_are_the_settings_in_each_process():
    """Every flow run is a process of its own: the steps' delays are ETL_RETRY_DELAYS as the settings parse
    it there, and a bad value fails the process naming the variable."""
    import subprocess
    import sys

    probe = "from tasks.extract import inspect_source; print(inspect_source.retry_delay_seconds)"

    def started(value: str | None) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "ETL_RETRY_DELAYS"}
        if value is not None:
            env["ETL_RETRY_DELAYS"] = value
        return subprocess.Popen(
            [sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    # The three at once: each process spends its seconds importing Prefect.
    probes = {value: started(value) for value in ("0,1", None, "soon")}
    done = {value: (p.communicate(timeout=120), p.returncode) for value, p in probes.items()}
    assert done["0,1"][0][0].strip() == "[0.0, 1.0]"
    assert done[None][0][0].strip() == "[2.0, 8.0, 30.0]"
    (_, stderr), returncode = done["soon"]
    assert returncode != 0 and "ETL_RETRY_DELAYS must be" in stderr


def test_the_sample_batch_is_found_at_use(monkeypatch, tmp_path):
    from berlin_rentals import synthetic
    from berlin_rentals.config.components import DEFAULT_SAMPLE_ZIP

    monkeypatch.setenv("ETL_SAMPLE_ZIP", str(tmp_path / "sample.zip"))
    assert synthetic.sample_zip() == synthetic.SAMPLE_ZIP == tmp_path / "sample.zip"
    monkeypatch.delenv("ETL_SAMPLE_ZIP")
    assert synthetic.SAMPLE_ZIP == DEFAULT_SAMPLE_ZIP and DEFAULT_SAMPLE_ZIP.parent.name == "data"
