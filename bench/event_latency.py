"""Upload → rows visible, through the whole event path, on the local stack (`make up` first).

Each upload is a fresh hourly batch of `--listings` real-shaped listings (300; bench/generate.py, with the
keys the model does not read at their real shares), put to the raw prefix and timed until its ledger
row says loaded (the row commits with the data). Uploads go one at a time, each once the previous
file's run has finished (not just loaded: its lineage, artifacts and final state), so each figure is
one file's latency, not queueing behind another run's tail.

Two launch configurations of the `ingest-file` runs, interleaved upload by upload (the order alternates
each round) against the same stack, so both see the same machine:
- `old`: Prefect's default flow run command, the workspace supervisor (a Python process that imports
  Prefect, runs the pull steps, then execs `python -m prefect.engine`, which imports Prefect again);
- `new`: the stack's pool default, `python -m prefect.engine` (devstack/prefect_services.py FLOW_RUN_COMMAND).
The bench switches between them through the deployment's job variables (the worker reads them when it
submits a run) and puts the deployment's own back at the end.

Where each upload's seconds went, from the server's records (same clock): bridge (upload → event
received), automation (→ flow run created), worker (→ Pending: its poll), process (→ Running: start,
imports, pull steps, flow load), ingest (→ rows visible).

    .venv/bin/python -m bench.event_latency --uploads 20              # 20 of each, interleaved
    .venv/bin/python -m bench.event_latency --uploads 20 --configs new
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from devstack.demo import load_stack_env, wait_for_ledger, wait_until_idle

RESULTS = Path(__file__).resolve().parent / "results"
# Deployment job variables per configuration; `command: None` is Prefect's own default (the pool's
# default command is the stack's).
CONFIGS: dict[str, dict] = {"old": {"command": None}, "new": {}}
# The server persists events in batches, at least this often (PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL).
EVENT_FLUSH_SECONDS = 6
STAGES = ("bridge", "automation", "worker", "process", "ingest")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Api:
    """The few Prefect API calls the bench needs, with the stack's credentials."""

    def __init__(self) -> None:
        from devstack.local_stack import _api_json

        self._json, self.url, self.auth = (
            _api_json,
            os.environ["PREFECT_API_URL"],
            os.environ["PREFECT_API_AUTH_STRING"],
        )

    @staticmethod
    def _retrying(call):
        import urllib.error

        for attempt in range(5):
            try:
                return call()
            except (urllib.error.HTTPError, TimeoutError) as error:
                # The SQLite-backed server answers 503, or not in time, while its database is locked
                # by a burst of writes (or the shared machine starves it).
                if getattr(error, "code", 503) != 503 or attempt == 4:
                    raise
                time.sleep(1)
        return None

    def _call(self, path: str, body: dict | None = None):
        return self._retrying(lambda: self._json(f"{self.url}{path}", body, 30, auth_string=self.auth))

    def get(self, path: str):
        return self._call(path)

    def post(self, path: str, body: dict):
        return self._call(path, body)

    def patch_job_variables(self, deployment_id: str, job_variables: dict) -> None:
        import urllib.request

        from devstack.local_stack import _basic_auth

        request = urllib.request.Request(
            f"{self.url}/deployments/{deployment_id}",
            data=json.dumps({"job_variables": job_variables}).encode(),
            headers={"Content-Type": "application/json", **_basic_auth(self.auth)},
            method="PATCH",
        )
        self._retrying(lambda: urllib.request.urlopen(request, timeout=30).close())


def breakdown(api: Api, deployment_id: str, bucket: str, key: str, uploaded: float, visible: float) -> dict:
    """Seconds per stage of one upload, from the event's and the flow run's server-side timestamps."""
    events = api.post(
        "/events/filter",
        {"filter": {"resource": {"id": [f"s3://{bucket}/{key}"]}, "event": {"name": ["aws.s3.object.created"]}}},
    )["events"]
    runs = [
        run
        for run in api.post(
            "/flow_runs/filter",
            {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 200},
        )
        if run["parameters"].get("key") == key
    ]
    if not events or len(runs) != 1:
        return {}
    states = {
        state["type"]: _stamp(state["timestamp"])
        for state in api.get(f"/flow_run_states/?flow_run_id={runs[0]['id']}")
        if state["name"] != "Submitting"
    }
    marks = [
        uploaded,
        _stamp(events[0]["received"]),
        states.get("SCHEDULED"),
        states.get("PENDING"),
        states.get("RUNNING"),
        visible,
    ]
    if None in marks:
        return {}
    return {stage: round(marks[i + 1] - marks[i], 3) for i, stage in enumerate(STAGES)}


def summary(latencies: list[float]) -> dict:
    return {
        "uploads": len(latencies),
        "p50_seconds": round(percentile(latencies, 0.50), 3),
        "p95_seconds": round(percentile(latencies, 0.95), 3),
        "min_seconds": round(min(latencies), 3),
        "max_seconds": round(max(latencies), 3),
        "mean_seconds": round(statistics.mean(latencies), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=20, help="uploads per configuration")
    parser.add_argument("--configs", default="old,new", help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--listings", type=int, default=300, help="real-shaped listings per upload")
    args = parser.parse_args()
    configs = [name for name in args.configs.split(",") if name]
    if not configs or set(configs) - set(CONFIGS):
        raise SystemExit(f"--configs takes a subset of {','.join(CONFIGS)}")
    load_stack_env()
    from bench.generate import RecordFactory
    from berlin_rentals.config import Settings
    from berlin_rentals.s3 import s3_client
    from berlin_rentals.source import normalize_etag
    from berlin_rentals.synthetic import batch_name, zip_lines
    from tasks.common import warehouse_engine

    settings = Settings.from_env()
    s3, engine, api = s3_client(settings), warehouse_engine(settings.warehouse_url), Api()
    deployment = api.get("/deployments/name/ingest-file/ingest-file")
    folder = f"bench-{uuid.uuid4().hex[:6]}"
    factory = RecordFactory(seed=uuid.uuid4().int % 1000)
    # Listing ids of their own for this run: every upload's listings are new ones, as a fresh hour's mostly are.
    first_id = 900_000_000 + (uuid.uuid4().int % 1000) * 1_000_000
    base = datetime(2032, 1, 1, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 1000)
    uploads: dict[str, list[tuple[str, float, float]]] = {name: [] for name in configs}
    n, current, load_before = 0, None, os.getloadavg()[1]
    try:
        for round_ in range(args.uploads):
            for name in configs if round_ % 2 == 0 else configs[::-1]:
                if name != current:
                    api.patch_job_variables(deployment["id"], {**deployment["job_variables"], **CONFIGS[name]})
                    current = name
                wait_until_idle()
                hour = base + timedelta(hours=n)
                ids = range(first_id + n * args.listings, first_id + (n + 1) * args.listings)
                lines = [json.dumps(factory.record(i, hour), ensure_ascii=False).encode() for i in ids]
                body = zip_lines(batch_name(hour) + ".json", lines)
                key = f"{settings.raw_prefix}{folder}/{batch_name(hour)}.zip"
                n += 1
                uploaded, t0 = time.time(), time.perf_counter()
                etag = normalize_etag(s3.put_object(Bucket=settings.raw_bucket, Key=key, Body=body)["ETag"])
                row = wait_for_ledger(engine, settings.warehouse_schema, key, etag)
                latency = time.perf_counter() - t0
                if row is None or row.status != "loaded":
                    raise SystemExit(f"{key} was not loaded ({row and row.status}): see .local/logs/")
                uploads[name].append((key, uploaded, latency))
                print(f"  [{round_ + 1:2d}/{args.uploads}] {name:3} {key}: {latency:.2f} s", flush=True)
        wait_until_idle()
    finally:
        api.patch_job_variables(deployment["id"], deployment["job_variables"])
    time.sleep(EVENT_FLUSH_SECONDS)

    # Other work on this shared machine starves a flow run's start-up: say how busy it was.
    load = {"before": round(load_before, 2), "after": round(os.getloadavg()[1], 2), "cores": os.cpu_count()}
    result: dict = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "load_average_5min": load}
    result["configs"] = {}
    print(f"\nload average (5 min) {load['before']} before, {load['after']} after, on {load['cores']} cores")
    for name in configs:
        latencies = [latency for _, _, latency in uploads[name]]
        parts = [
            part
            for key, uploaded, latency in uploads[name]
            if (part := breakdown(api, deployment["id"], settings.raw_bucket, key, uploaded, uploaded + latency))
        ]
        stages = (
            {stage: round(statistics.median(part[stage] for part in parts), 3) for stage in STAGES} if parts else {}
        )
        result["configs"][name] = {**summary(latencies), "median_stage_seconds": stages, "job_variables": CONFIGS[name]}
        figures = result["configs"][name]
        print(
            f"{name}: upload → rows visible over {figures['uploads']} uploads: p50 {figures['p50_seconds']:.2f} s, "
            f"p95 {figures['p95_seconds']:.2f} s (min {figures['min_seconds']:.2f}, max {figures['max_seconds']:.2f})"
        )
        if stages:
            print("  median seconds per stage: " + ", ".join(f"{stage} {stages[stage]:.2f}" for stage in STAGES))
    if {"old", "new"} <= set(configs):
        old, new = result["configs"]["old"], result["configs"]["new"]
        result["new_over_old"] = {q: round(new[q] / old[q], 3) for q in ("p50_seconds", "p95_seconds")}
        print(
            f"new / old: p50 {result['new_over_old']['p50_seconds']:.2f}, p95 {result['new_over_old']['p95_seconds']:.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "event_latency.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
