"""No credentials in the repository: a literal AWS access key or secret in a tracked file fails the suite."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ACCESS_KEY = re.compile(rb"(?<![A-Z0-9])(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])")
SECRET = re.compile(rb"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])", re.I)


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / name for name in listed.decode().split("\0") if name]


def findings(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        if not path.is_file():
            continue
        body = path.read_bytes()
        for pattern in (ACCESS_KEY, SECRET):
            found += [
                f"{path.relative_to(REPO)}: {m.group(0)[:8].decode(errors='replace')}…" for m in pattern.finditer(body)
            ]
    return found


def test_no_tracked_file_holds_an_aws_key():
    files = tracked_files()
    assert len(files) > 30
    assert findings(files) == []


def test_the_check_recognises_a_key():
    planted = REPO / "tests" / "_planted_key.txt"
    try:
        planted.write_bytes(b"id = AKIA" + b"ABCDEFGHIJKLMNOP" + b"\\naws_secret_access_key=" + b"a" * 40 + b"\\n")
        assert len(findings([planted])) == 2
    finally:
        planted.unlink()
