from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from berlin_rentals.config import Settings, read_env_file
from berlin_rentals.synthetic import SAMPLE_ZIP


@pytest.fixture(scope="session")
def sample_zip() -> Path:
    if not SAMPLE_ZIP.exists():
        pytest.fail(f"the sample batch is missing: {SAMPLE_ZIP} (shared/ must sit beside the clone)")
    return SAMPLE_ZIP


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory) -> dict[str, str]:
    """A real local stack for the session: moto server (S3/SQS), PostgreSQL, Prefect server.

    TEST_STACK_ENV_FILE=.local/env reuses a stack started by `make up` (faster when iterating).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    reuse = os.environ.get("TEST_STACK_ENV_FILE")
    stack = None
    if reuse:
        env = read_env_file(reuse)
    else:
        from deployments.local_stack import LocalStack

        stack = LocalStack(tmp_path_factory.mktemp("stack"))
        env = stack.up()
    saved = dict(os.environ)
    os.environ.update(env)
    storage = tmp_path_factory.mktemp("prefect-results")
    try:
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_LOCAL_STORAGE_PATH: storage}):
            yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if stack is not None:
            stack.down()


@pytest.fixture
def settings(stack_env, monkeypatch) -> Settings:
    """A fresh warehouse schema per test, so tests never see each other's rows."""
    from berlin_rentals.warehouse.ddl import create_warehouse, make_engine

    schema = f"t_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("WAREHOUSE_SCHEMA", schema)
    settings = Settings.from_env()
    create_warehouse(settings.warehouse_url, schema)
    yield settings
    engine = make_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def s3(stack_env):
    from berlin_rentals.s3 import s3_client

    return s3_client(Settings.from_env())
