"""The *From a shell* block of docs/local-stack.md (the README's next step after `make demo`), run as
written in a fresh shell against the session's stack.

A user copies it after `make demo`: `source .local/env`, then `prefect` and the project's modules. The
block runs in a directory laid out like a checkout (`.local/env` holds the stack's settings, `.venv`
is the project's), with nothing in the environment but PATH and HOME, so a setting the env file does
not export, or a command the docs get wrong, fails here as it would for the user.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.demo import wait_for_ledger
from tasks.common import warehouse_engine
from tests.helpers import query

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE_KEY = "raw/immobilienscout24_berlin_20190113_15.zip"  # where `make demo` puts the sample


SHELL_DOC = "docs/local-stack.md"  # where the README's quick start sends a user next


def readme_block(heading: str, doc: str = SHELL_DOC) -> str:
    """The first ```bash block after a heading of a document of the checkout."""
    text = (REPO / doc).read_text()
    section = text[text.index(f"## {heading}\n") :]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, f"no bash block under '## {heading}' in {doc}"
    return match.group(1)


@pytest.fixture
def checkout_like(tmp_path, local_stack):
    stack, _ = local_stack
    (tmp_path / ".local").mkdir()
    shutil.copy(stack.env_file, tmp_path / ".local" / "env")
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    return tmp_path


def test_the_from_a_shell_block_runs_as_written(event_path, stack_env, s3, sample_zip, checkout_like):
    block = readme_block("From a shell")
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[0] == "source .local/env" and len(commands) >= 6, commands
    # As after `make demo`: the sample is in the raw bucket and its event-driven run loaded it.
    etag = s3.put_object(Bucket=stack_env["ETL_RAW_BUCKET"], Key=SAMPLE_KEY, Body=sample_zip.read_bytes())["ETag"]
    engine = warehouse_engine(stack_env["WAREHOUSE_URL"])
    assert wait_for_ledger(engine, stack_env["WAREHOUSE_SCHEMA"], SAMPLE_KEY, etag.strip('"')) is not None

    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block],
        cwd=checkout_like,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(checkout_like)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    # Each command did what the docs say it does.
    assert "ingest-file/ingest-file" in out and "catch-up/catch-up" in out  # deployment ls
    assert "Flow run finished successfully in 'Completed'" in out  # the forced rerun on the worker
    assert "was skipped: the ledger says loaded" in out  # the in-process ingest of a loaded version
    assert "catch-up of batch hours" in out  # the catch-up's closing sentence
    assert "loaded version(s) with rejected lines" in out  # replay --list
    assert re.search(rf"{re.escape(SAMPLE_KEY)}\s*\|\s*loaded", out), out[-2000:]  # the ledger of today
    # the listing's raw line, as it is in the zip (a later test's revision of it keeps its shape)
    assert re.search(r'^\{"ok": true, "data": \{.*"id": "56906504"', done.stdout, re.M), done.stdout[-2000:]
    ledger = query_ledger(stack_env)
    assert [(r.status, r.attempts) for r in ledger] == [("loaded", 0)]


def query_ledger(stack_env):
    from berlin_rentals.config import Settings

    return query(
        Settings.from_env(stack_env), "SELECT status, attempts FROM {schema}.load_ledger WHERE key = :k", k=SAMPLE_KEY
    )
