"""A test's folder says its tier, and tests/conftest.py holds it to that: a test in tests/unit/ that needs the
stack or is slow, one in tests/stack/ that is slow or needs no stack, one in tests/e2e/ that is not slow, or
one outside the three folders fails the collection, naming itself and the folder it belongs in. Checked on a
tree of its own, collected by a pytest of its own under a copy of the real conftest (no service is started:
collection only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PLACED = {
    "unit/test_unit_placed.py": """
def test_plain():
    pass

def test_with_the_sample(sample_zip, tmp_path):
    pass
""",
    "stack/test_stack_placed.py": """
import pytest

def test_on_the_stack(settings):
    pass

@pytest.mark.stack  # starts a service of its own
def test_marked_stack():
    pass
""",
    "e2e/test_e2e_placed.py": """
import pytest

pytestmark = pytest.mark.slow

def test_end_to_end(local_stack):
    pass
""",
}

MISPLACED = {
    "unit/test_unit_misplaced.py": """
import pytest

def test_unit_but_on_the_stack(settings):
    pass

@pytest.mark.slow
def test_unit_but_slow():
    pass

@pytest.mark.stack
def test_unit_but_marked_stack():
    pass
""",
    "stack/test_stack_misplaced.py": """
import pytest

def test_stack_but_stack_free():
    pass

@pytest.mark.slow
def test_stack_but_slow(stack_env):
    pass
""",
    "stack/test_stack_misplaced_in_a_class.py": """
import pytest

class TestInAClass:
    @pytest.mark.parametrize("n", [1, 2])
    def test_stack_but_stack_free_in_a_class(self, n):
        pass
""",
    "e2e/test_e2e_misplaced.py": """
def test_e2e_but_not_slow(local_stack):
    pass
""",
    "test_outside_the_folders.py": """
def test_in_tests_itself():
    pass
""",
}

BELONGS = {
    "unit/test_unit_misplaced.py::test_unit_but_on_the_stack": "stack",
    "unit/test_unit_misplaced.py::test_unit_but_slow": "e2e",
    "unit/test_unit_misplaced.py::test_unit_but_marked_stack": "stack",
    "stack/test_stack_misplaced.py::test_stack_but_stack_free": "unit",
    "stack/test_stack_misplaced.py::test_stack_but_slow": "e2e",
    "stack/test_stack_misplaced_in_a_class.py::TestInAClass::test_stack_but_stack_free_in_a_class": "unit",
    "e2e/test_e2e_misplaced.py::test_e2e_but_not_slow": "stack",
    "test_outside_the_folders.py::test_in_tests_itself": "unit",
}


def test_a_test_in_the_wrong_folder_fails_the_collection_naming_the_folder_it_belongs_in(tmp_path):
    tests = tmp_path / "tests"
    for name, body in (PLACED | MISPLACED).items():
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text(body.lstrip())
    (tests / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    stack: s\n    slow: s\n")
    # This checkout's code, whatever the venv's editable install points at; no plugin but pytest's own.
    env = os.environ | {"PYTHONPATH": str(REPO), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["--continue-on-collection-errors", "tests"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    for test, folder in BELONGS.items():
        assert f"tests/{test} is in " in output, output
        line = next(line for line in output.splitlines() if f"tests/{test} is in " in line)
        assert f"belongs in tests/{folder}/" in line, line
    for name in MISPLACED:
        assert f"ERROR tests/{name}" in output, output
    for name in PLACED:  # collected, every test of them, and no error
        assert f"ERROR tests/{name}" not in output, output
        assert f"tests/{name}::" in output, output
    # A parametrized test named once, in the errors themselves: the short summary repeats them (in full where
    # CI is set, as pytest does not truncate it there).
    errors = output.split("short test summary info")[0]
    assert errors.count("belongs in tests/") == len(BELONGS), output
