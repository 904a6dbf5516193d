"""The production deployment file sizes the catch-up for the processes it starts."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _deployments(path: Path) -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load(path.read_text())["deployments"]}


def test_the_ecs_catch_up_has_a_vcpu_and_an_ingest_task_s_memory_for_each_process():
    ecs = _deployments(REPO / "deployments" / "prefect.ecs.yaml")
    ingest_job = ecs["ingest-file"]["work_pool"]["job_variables"]
    catch_up = ecs["catch-up"]
    job, processes = catch_up["work_pool"]["job_variables"], catch_up["parameters"]["max_concurrency"]
    assert processes == job["cpu"] // 1024 >= 2  # more processes than vCPUs would only share them
    assert job["memory"] >= ingest_job["memory"] * processes
    # everything else (image, roles, network, environment) is the ingest task's own
    assert {k: v for k, v in job.items() if k not in ("cpu", "memory")} == {
        k: v for k, v in ingest_job.items() if k not in ("cpu", "memory")
    }


def test_both_deployment_files_name_the_same_deployments_and_entrypoints():
    local = _deployments(REPO / "prefect.yaml")
    ecs = _deployments(REPO / "deployments" / "prefect.ecs.yaml")
    assert {n: d["entrypoint"] for n, d in local.items()} == {n: d["entrypoint"] for n, d in ecs.items()}


def test_the_rerun_form_explains_every_ingest_parameter():
    # The UI's "Copy to new run" form shows these descriptions; `force` is an unlabelled toggle without one.
    from prefect.utilities.callables import parameter_schema

    from flows.ingest import ingest_file

    properties = parameter_schema(ingest_file.fn).properties
    assert set(properties) == {"bucket", "key", "etag", "force", "version_id"}
    assert all(p.get("description") for p in properties.values()), properties
    assert "release a parked file" in properties["force"]["description"]
