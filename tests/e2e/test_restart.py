"""A restart of the local stack is consistent: `down` then `up` keeps S3 as the warehouse remembers it.

moto's server keeps S3 and SQS in memory; the warehouse and Prefect's database are on disk. `down`
saves S3 and the queued messages to `<root>/s3/`, `up` puts them back before the bridge starts and
before the raw bucket notifies anyone, so a restart starts no ingest run. `reset` deletes the state.

After the restart the sample is rerun in the UI, in a headless Chromium, as docs/operations.md tells a
person to: the run the upload's event started, ⋮ → Copy to new run, force on, Submit. The copy names
the event's version id, which the restore could not keep (moto cannot keep version ids); the
run reads the key's current version, which has the same ETag, and its message says so. Screenshots
land in .local/screenshots/ (printed with `pytest -s`).

The slow tests share one stack of their own (every service, as `make up` starts it, in a temporary
root, driven through the CLI) and change it: pytest runs them in file order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from berlin_rentals.config import read_env_file
from berlin_rentals.synthetic import SAMPLE_ZIP, read_sample_records, zip_lines
from devstack.local_stack import DEFAULTS, REPO
from tests.browser import chromium, log_in, require_browser, screenshot, wait_for_text
from tests.browser import wait_for as wait_on_page
from tests.helpers import aws_client, prefect_api, wait_for

SESSION_KEYS = {
    "WAREHOUSE_URL",
    "WAREHOUSE_PSQL_URL",
    "AWS_ENDPOINT_URL",
    "PREFECT_API_URL",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_HOME",
    "PREFECT_UI_URL",
    *DEFAULTS,
}
EVENT_LINE = "event aws.s3.object.created for"
REJECTS = "immobilienscout24_berlin_20190113_16.zip"  # a later hour: 5 good lines, 3 rejected
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
NO_API = "Can't connect to Server API"  # the UI's banner when its API does not answer
UI_SECONDS = 60


def cli(root: Path | None, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """python <args> [--root root] in the checkout, as a user would run it."""
    done = subprocess.run(
        [sys.executable, *args, *(["--root", str(root)] if root else [])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(f"$ {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done


def stack_cli(root: Path, env: dict[str, str], command: str, *extra: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = cli(root, env, "-m", "devstack.local_stack", command, *extra)
    print(f"{command}: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def ingest_runs(env: dict[str, str]) -> list[dict]:
    return prefect_api(env, "/flow_runs/filter", {"flows": {"name": {"any_": ["ingest-file"]}}, "limit": 200})


def ledger(env: dict[str, str]) -> dict[tuple[str, str], tuple]:
    with psycopg.connect(env["WAREHOUSE_URL"].replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT key, etag, status, flow_run_id, finished_at FROM berlin_rentals.load_ledger"
        ).fetchall()
    return {(key, etag): (status, run, finished) for key, etag, status, run, finished in rows}


def catch_up_schedules(env: dict[str, str]) -> tuple[str, list[tuple[str, bool]]]:
    """The catch-up deployment's id and its schedules (cron, active)."""
    deployment = prefect_api(env, "/deployments/name/catch-up/catch-up")
    return deployment["id"], [(s["schedule"].get("cron", ""), s["active"]) for s in deployment["schedules"]]


def event_lines(root: Path) -> int:
    log = root / "logs" / "bridge.log"
    return log.read_text(errors="replace").count(EVENT_LINE) if log.exists() else 0


def rejects_batch() -> bytes:
    good = [json.dumps(record).encode() for record in read_sample_records()[:5]]
    return zip_lines(REJECTS.replace(".zip", ".json"), good + [b"not json", b'{"ok": false}', b"[1, 2]"])


def _choose_from_run_menu(browser, label: str) -> None:
    """Open the ⋮ menu at the top right of a flow run's page and choose `label`, as a person does.

    The ⋮ is the one button of the page's heading with an icon and no text (Retry and the run's date
    have text); its items are links and buttons known by their visible text."""
    from selenium.webdriver.common.by import By

    menu = wait_on_page(
        browser,
        lambda b: b.execute_script(
            "const icons = [...document.querySelectorAll('header button')]"
            ".filter(x => x.offsetParent !== null && !x.innerText.trim());"
            "return icons.length ? icons[icons.length - 1] : null;"
        ),
        "no ⋮ button (one with an icon and no text) in the heading of the run's page",
        timeout=UI_SECONDS,
    )
    menu.click()
    item = wait_on_page(
        browser,
        lambda b: next(
            (
                e
                for e in b.find_elements(
                    By.XPATH,
                    f"//*[self::a or self::button or @role='button' or @role='menuitem'][normalize-space(.)='{label}']",
                )
                if e.is_displayed()
            ),
            None,
        ),
        f"no {label!r} in the run's ⋮ menu",
        timeout=UI_SECONDS,
    )
    item.click()


def _switch_on(browser, parameter: str) -> None:
    """Switch on the toggle (role=switch) of the form field labelled `parameter` (shown as 'force (Optional)')."""
    find = """
        for (const label of document.querySelectorAll('label')) {
            const name = label.innerText.trim();
            if (name !== arguments[0] && !name.startsWith(arguments[0] + ' ')) continue;
            let field = label.parentElement;  // up to the field's box: the first that holds a switch
            while (field && !field.querySelector('[role=switch]')) field = field.parentElement;
            // and only its own: a box holding a second field's label is the whole form
            if (field && field.querySelectorAll('label[for]').length === 1) return field.querySelector('[role=switch]');
        }
        return null;"""
    toggle = wait_on_page(
        browser,
        lambda b: b.execute_script(find, parameter),
        f"no on/off switch (role=switch) for the form's {parameter!r} parameter",
        timeout=UI_SECONDS,
    )
    # In the middle of the window: the screenshot after shows the fields around it (etag, version_id) too.
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", toggle)
    if toggle.get_attribute("aria-checked") != "true":
        toggle.click()
    # On, and done sliding: a screenshot taken mid-transition shows the switch neither on nor off.
    settled = (
        "return arguments[0].getAttribute('aria-checked') === 'true'"
        " && !arguments[0].getAnimations({subtree: true}).some(a => a.playState === 'running')"
    )
    wait_on_page(
        browser,
        lambda b: b.execute_script(settled, b.execute_script(find, parameter)),
        f"the {parameter!r} switch did not turn on when clicked",
        timeout=10,
    )


def _click_button(browser, text: str) -> None:
    from selenium.webdriver.common.by import By

    button = wait_on_page(
        browser,
        lambda b: next(
            (
                e
                for e in b.find_elements(By.XPATH, f"//button[normalize-space(.)='{text}']")
                if e.is_displayed() and e.is_enabled()
            ),
            None,
        ),
        f"no {text!r} button on the form",
        timeout=UI_SECONDS,
    )
    button.click()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Every service, started by the CLI as `make up` does: root, the child's environment."""
    root = tmp_path_factory.mktemp("restart") / "local"
    child_env = {key: value for key, value in os.environ.items() if key not in SESSION_KEYS}
    child_env["ETL_SAMPLE_ZIP"] = str(SAMPLE_ZIP)
    try:
        stack_cli(root, child_env, "up")
        yield root, child_env
    finally:
        cli(root, child_env, "-m", "devstack.local_stack", "down")


@pytest.fixture(scope="module")
def loaded(stack):
    """Two batches uploaded and loaded through the event path (S3 → SQS → bridge → worker)."""
    root, child_env = stack
    env = read_env_file(root / "env")
    s3 = aws_client("s3", env)
    objects = {}
    for name, body in ((SAMPLE_ZIP.name, SAMPLE_ZIP.read_bytes()), (REJECTS, rejects_batch())):
        key = env["ETL_RAW_PREFIX"] + name
        objects[key] = s3.put_object(
            Bucket=env["ETL_RAW_BUCKET"],
            Key=key,
            Body=body,
            ContentType="application/zip",
            Metadata={"source": "restart-test"},
        )["ETag"]
    started = time.monotonic()
    wait_for(
        lambda: all(ledger(env).get((k, e.strip('"')), ("",))[0] == "loaded" for k, e in objects.items()),
        180,
        "both batches loaded by the event path",
    )

    def finished() -> bool:
        try:
            runs = ingest_runs(env)
        except TimeoutError:  # the API slow to answer under load (seen once in a full run): ask again
            return False
        return len(runs) >= 2 and all(r["state_type"] in FINAL for r in runs)

    wait_for(finished, 60, "their ingest-file runs finished")
    print(f"upload → loaded, event path: {time.monotonic() - started:.1f} s")
    return root, child_env, {key: etag.strip('"') for key, etag in objects.items()}


@pytest.mark.slow
def test_a_restart_keeps_s3_as_the_warehouse_remembers_it_and_starts_no_run(loaded):
    root, child_env, objects = loaded
    require_browser()  # the rerun below is the UI's: without a browser, fail now rather than after the restart
    env = read_env_file(root / "env")
    s3 = aws_client("s3", env)
    # A multipart object (its ETag is not an MD5 of the bytes) in a bucket of no pipeline's.
    s3.create_bucket(
        Bucket="restart-other", CreateBucketConfiguration={"LocationConstraint": env["AWS_DEFAULT_REGION"]}
    )
    upload = s3.create_multipart_upload(Bucket="restart-other", Key="big/part file.bin")["UploadId"]
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket="restart-other", Key="big/part file.bin", UploadId=upload, PartNumber=n, Body=os.urandom(size)
            )["ETag"],
        }
        for n, size in ((1, 5 * 1024 * 1024), (2, 1000))
    ]
    multipart = s3.complete_multipart_upload(
        Bucket="restart-other", Key="big/part file.bin", UploadId=upload, MultipartUpload={"Parts": parts}
    )["ETag"]
    assert multipart.strip('"').endswith("-2")
    runs_before, events_before, ledger_before = len(ingest_runs(env)), event_lines(root), ledger(env)
    run_ids_before, schedules_before = {r["id"] for r in ingest_runs(env)}, catch_up_schedules(env)

    down = stack_cli(root, child_env, "down")
    up = stack_cli(root, child_env, "up")
    secret = env["PREFECT_API_AUTH_STRING"]
    env = read_env_file(root / "env")
    s3, sqs = aws_client("s3", env), aws_client("sqs", env)
    # The same API password after the restart: a shell that sourced the env file before still gets in.
    assert env["PREFECT_API_AUTH_STRING"] == secret
    # Prefect's database (on the stack's PostgreSQL) kept the runs and the catch-up's deployment and schedule.
    assert {r["id"] for r in ingest_runs(env)} == run_ids_before
    assert catch_up_schedules(env) == schedules_before and schedules_before[1], schedules_before

    # Every object is back with the ETag, content type and metadata it had.
    listed = s3.list_objects_v2(Bucket=env["ETL_RAW_BUCKET"]).get("Contents", [])
    assert {item["Key"]: item["ETag"].strip('"') for item in listed} == objects
    for key, etag in objects.items():
        head = s3.head_object(Bucket=env["ETL_RAW_BUCKET"], Key=key)
        assert head["ETag"].strip('"') == etag, key
        assert head["ContentType"] == "application/zip" and head["Metadata"] == {"source": "restart-test"}
    assert s3.head_object(Bucket="restart-other", Key="big/part file.bin")["ETag"] == multipart
    staged = s3.list_objects_v2(Bucket=env["ETL_STAGING_BUCKET"])["KeyCount"]
    assert staged > 0  # the staged Parquet came back too
    assert "saved S3: " in down.stdout and (root / "s3" / "manifest.json").exists()
    assert "restored S3" in up.stdout and "WARNING" not in up.stdout

    # The restore announced nothing: no event from the bridge, no run. The queue is drained first: `up` sets
    # the raw bucket's notification again, and S3 answers with an s3:TestEvent the bridge deletes once it polls
    # (on a busy machine the bridge, started last, took more than the 3 s waited here before). Any object's
    # notification among them would be forwarded by then, and show as an event and a run below.
    queue = sqs.get_queue_url(QueueName=env["ETL_QUEUE_NAME"])["QueueUrl"]

    def drained() -> bool:
        counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        return counts["ApproximateNumberOfMessages"] == counts["ApproximateNumberOfMessagesNotVisible"] == "0"

    wait_for(drained, 60, "the queue drained by the bridge")
    time.sleep(3)  # the bridge polls every second: an event it forwarded is in its log by now
    assert event_lines(root) == events_before
    assert len(ingest_runs(env)) == runs_before
    assert ledger(env) == ledger_before

    # The rerun a person does in the UI (docs/operations.md: Reruns): the run the upload's event started,
    # ⋮ → Copy to new run, force on, Submit. The copy carries the event's version id, which the restore
    # replaced, so the run must read the key's current version (same ETag) and say so.
    key = env["ETL_RAW_PREFIX"] + SAMPLE_ZIP.name
    event_runs = [
        r
        for r in ingest_runs(env)
        if r["id"] in run_ids_before and r["parameters"].get("key") == key and r["parameters"].get("version_id")
    ]
    assert len(event_runs) == 1, f"the event's ingest-file run of {key}: {event_runs}"
    event_run = event_runs[0]
    gone_version = event_run["parameters"]["version_id"]
    ui_url = env["PREFECT_UI_URL"].rstrip("/")
    with chromium() as browser:
        log_in(browser, ui_url, env["PREFECT_API_AUTH_STRING"])
        browser.get(f"{ui_url}/runs/flow-run/{event_run['id']}")
        wait_for_text(browser, event_run["name"], timeout=UI_SECONDS, refuse=(NO_API,))
        _choose_from_run_menu(browser, "Copy to new run")
        # The form fills in the copied parameters after it renders: the switch is set once they are in,
        # so that filling-in cannot turn it off again.
        wait_on_page(
            browser,
            lambda b: b.execute_script(
                "return [...document.querySelectorAll('textarea, input')].some(f => f.value === arguments[0])",
                gone_version,
            ),
            f"the Copy to new run form does not show the event's version_id {gone_version}",
            timeout=UI_SECONDS,
        )
        _switch_on(browser, "force")
        screenshot(browser, "restart-rerun-form")
        _click_button(browser, "Submit")
        # The UI's toast "<run> scheduled to start now": the run was created.
        wait_for_text(browser, "scheduled to start", timeout=UI_SECONDS, refuse=(NO_API,))
        screenshot(browser, "restart-rerun-submitted")

    def new_run() -> dict | None:
        try:
            runs = [r for r in ingest_runs(env) if r["id"] not in run_ids_before and r["parameters"].get("key") == key]
        except TimeoutError:  # the API slow to answer under load: ask again
            return None
        return max(runs, key=lambda r: r["created"], default=None)

    run = wait_for(new_run, 60, f"a new ingest-file run of {key} after Submit")
    started = time.monotonic()

    def final() -> dict | None:
        try:
            current = prefect_api(env, f"/flow_runs/{run['id']}")
        except TimeoutError:
            return None
        return current if current["state_type"] in FINAL else None

    done = wait_for(final, 180, "the rerun copied in the UI finished")
    print(f"UI rerun through the worker: {time.monotonic() - started:.1f} s")
    message = done["state"]["message"] or ""
    assert done["state_type"] == "COMPLETED", f"{done['state']['name']}: {message}"
    assert done["parameters"].get("force") is True, done["parameters"]
    # A copy of the event's run, so it asked for the version the restore replaced: the fallback was taken.
    assert done["parameters"].get("version_id") == gone_version, done["parameters"]
    assert f"version {gone_version} is gone" in message and "was read instead" in message, message
    status, run_id, finished = ledger(env)[(key, objects[key])]
    assert (status, run_id) == ("loaded", run["id"]) and finished > ledger_before[(key, objects[key])][2]
    assert len(ingest_runs(env)) == runs_before + 1  # that rerun, and nothing else

    # The catch-up lists both objects and finds them loaded.
    catch_up = cli(
        None,
        child_env | env,
        "-m",
        "flows.catch_up",
        "--since",
        "2019-01-13T15:00:00+00:00",
        "--until",
        "2019-01-13T17:00:00+00:00",
        "--max-concurrency",
        "1",
        "--json",
    )
    assert catch_up.returncode == 0
    report = json.loads(catch_up.stdout.strip().splitlines()[-1])
    assert (report["found"], report["loaded_now"], report["already_loaded"], report["failed_now"]) == (2, 0, 2, 0)
    assert ledger(env)[(key, objects[key])][1] == run["id"]


@pytest.mark.slow
def test_make_sql_answers_on_the_warehouse_and_the_ready_queries_run(loaded):
    root, child_env, objects = loaded
    env = read_env_file(root / "env")
    assert env["WAREHOUSE_PSQL_URL"] == f"postgresql://postgres@127.0.0.1:{env['LOCAL_PG_PORT']}/rentals"
    for mode in ((), ("--python",)):  # pgserver's psql, and the small prompt over psycopg
        done = cli(
            root,
            child_env,
            "-m",
            "devstack.sql",
            *mode,
            "-c",
            "SELECT status, count(*) AS files FROM load_ledger GROUP BY status",
        )
        assert done.returncode == 0, done.stderr
        assert re.search(r"loaded\s+\|\s+2\b", done.stdout) and "(1 row)" in done.stdout
        failed = cli(root, child_env, "-m", "devstack.sql", *mode, "-c", "SELECT * FROM no_such_table")
        assert failed.returncode != 0 and "no_such_table" in failed.stderr
    today = cli(root, child_env, "-m", "devstack.sql", "--ready", "ledger-today")
    assert today.returncode == 0 and all(key in today.stdout for key in objects) and "(2 rows)" in today.stdout
    rejects = cli(root, child_env, "-m", "devstack.sql", "--ready", "rejects-by-reason")
    assert rejects.returncode == 0
    assert re.findall(r"^(\w+)\s+\|\s+(\d+)\s+\|\s+(\d+)", rejects.stdout, re.M) == [
        ("not_an_object", "1", "1"),
        ("not_json", "1", "1"),
        ("not_ok", "1", "1"),
    ]
    history = cli(root, child_env, "-m", "devstack.sql", "--ready", "rent-history", "--listing", "56906504")
    assert history.returncode == 0 and "(2 rows)" in history.stdout
    assert SAMPLE_ZIP.name in history.stdout and REJECTS in history.stdout


@pytest.mark.slow
def test_up_says_loudly_when_moto_died_and_the_ledger_knows_objects_s3_lost(loaded):
    root, child_env, _ = loaded
    env = read_env_file(root / "env")
    moto = int((root / "run" / "moto.pid").read_text().split()[0])
    os.kill(moto, 9)  # no `make down`: nothing saved since the last one
    for path in (root / "s3").iterdir():  # and no snapshot at all
        subprocess.run(["rm", "-rf", str(path)], check=True)
    up = stack_cli(root, child_env, "up", "--services", "s3,postgres")
    assert "S3 WAS LOST: moto stopped without `make down`" in up.stdout
    assert "shows 2 loaded object(s) that are not in S3" in up.stdout and "make reset" in up.stdout
    assert aws_client("s3", env).list_objects_v2(Bucket=env["ETL_RAW_BUCKET"])["KeyCount"] == 0


@pytest.mark.slow
def test_reset_deletes_the_state_and_the_next_up_starts_from_empty(loaded):
    root, child_env, _ = loaded
    (root / "tools-of-someone").mkdir()
    settings = read_env_file(root / "env")
    done = stack_cli(root, child_env, "reset")
    assert "deleted " in done.stdout
    assert not [p.name for p in root.iterdir() if p.name in ("pgdata", "prefect", "s3", "logs")]
    assert (root / "tools-of-someone").is_dir() and read_env_file(root / "env") == settings
    assert not list((root / "run").glob("*.pid"))

    up = stack_cli(root, child_env, "up", "--services", "s3,postgres,prefect")
    assert "WARNING" not in up.stdout and "initialised PostgreSQL data directory" in up.stdout
    env = read_env_file(root / "env")
    assert {k: env[k] for k in settings if k.endswith("_PORT")} == {
        k: v for k, v in settings.items() if k.endswith("_PORT")
    }
    with psycopg.connect(env["WAREHOUSE_PSQL_URL"]) as conn:
        for table in ("load_ledger", "fact_flats", "flat_snapshots", "rejected_records"):
            assert conn.execute(f"SELECT count(*) FROM berlin_rentals.{table}").fetchone() == (0,), table
    s3 = aws_client("s3", env)
    assert sorted(b["Name"] for b in s3.list_buckets()["Buckets"]) == sorted(
        [env["ETL_RAW_BUCKET"], env["ETL_STAGING_BUCKET"]]
    )
    assert all(
        s3.list_objects_v2(Bucket=b)["KeyCount"] == 0 for b in (env["ETL_RAW_BUCKET"], env["ETL_STAGING_BUCKET"])
    )
    assert prefect_api(env, "/flow_runs/filter", {"limit": 10}) == []
    assert prefect_api(env, "/deployments/filter", {"limit": 10}) == []
