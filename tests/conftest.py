from __future__ import annotations

from pathlib import Path

import pytest

from berlin_rentals.synthetic import SAMPLE_ZIP


@pytest.fixture(scope="session")
def sample_zip() -> Path:
    if not SAMPLE_ZIP.exists():
        pytest.fail(f"the sample batch is missing: {SAMPLE_ZIP} (shared/ must sit beside the clone)")
    return SAMPLE_ZIP
