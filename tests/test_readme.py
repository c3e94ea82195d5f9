"""The README is the front door: its links lead somewhere and its set-up commands are the real ones.

(The pages under docs/ are checked by ``mkdocs build --strict`` in .ci/run.)
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_relative_link_of_the_readme_exists():
    targets = re.findall(r"\]\(([^)\s]+)\)", README)
    relative = [t.partition("#")[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert relative, "the README links to the docs"
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert missing == []


def test_the_two_set_up_commands():
    assert "pip install -e '.[serve]' && ingest-mw serve" in README
    assert "\nbash .ci/run\n" in README
    assert (ROOT / ".ci" / "run").exists()
