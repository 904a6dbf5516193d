"""The README stays a front door and the documents' links lead somewhere (stack-free).

The README is the first page a user reads: short, with the quick start as exactly the two commands
that work on a bare machine. Every relative link of the README, docs/ and bench/README.md must name a
file of the checkout and, with a #fragment, a heading of it, so moving a section cannot leave a dead
link behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    quick_start = text[text.index("## Quick start\n") :]
    block = re.search(r"```bash\n(.*?)```", quick_start, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "```mermaid" in text


def anchors(path: Path) -> set[str]:
    """GitHub's ids for a markdown file's headings, and any explicit <a id>."""
    text = path.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    found = set(re.findall(r'<a id="([^"]+)">', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document):
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)
    dead = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        name, _, fragment = target.partition("#")
        path = (document.parent / name).resolve() if name else document
        if not path.exists():
            dead.append(target)
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            dead.append(target)
    assert not dead, f"{document.relative_to(REPO)}: dead links {dead}"
