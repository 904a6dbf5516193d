"""What the production image installs: the lock file without the local stack or the test tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def uv() -> str:
    path = REPO / ".local" / "tools" / "bin" / "uv"
    found = str(path) if path.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv not found: run `make env`")
    return found


def test_the_image_dependency_set_leaves_out_the_local_stack_and_test_tools():
    exported = subprocess.run(
        [uv(), "export", "--frozen", "--no-default-groups", "--no-hashes"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {
        re.split(r"[=<> ;\[]", line.strip())[0].lower()
        for line in exported.splitlines()
        if line and not line.startswith(("#", " ", "-e", "."))
    }
    assert {
        "prefect",
        "prefect-aws",
        "pandas",
        "sqlalchemy-redshift",
        "redshift-connector",
        "psycopg",
        "pyarrow",
        "boto3",
        "msgspec",
    } <= names
    assert not names & {"moto", "pgserver", "pytest", "sqlglot"}


def test_the_dockerfile_copies_every_package_the_wheel_declares():
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = re.search(r"packages = \[(.*?)\]", pyproject).group(1)
    for package in re.findall(r'"(\w+)"', packages):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "uv sync --frozen --no-default-groups" in dockerfile


def test_the_environment_make_builds_has_its_dependencies_compiled_to_bytecode():
    # Each flow run on the process worker starts a fresh interpreter; with PYTHONDONTWRITEBYTECODE set
    # and no .pyc installed, each would compile its dependencies from source (about 2.5 s more per run).
    import importlib.util

    import pandas
    import prefect
    import pyarrow

    for module in (prefect, pandas, pyarrow):
        cached = importlib.util.cache_from_source(module.__file__)
        assert Path(cached).exists(), (
            f"{module.__name__} has no compiled bytecode ({cached}): sync with --compile-bytecode"
        )
