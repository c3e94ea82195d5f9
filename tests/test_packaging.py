"""The sdist: what it ships, and the metadata it carries (built without build isolation)."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import ingest_mw

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    out = tmp_path_factory.mktemp("dist")
    # Built from a copy: setuptools writes its egg-info into the tree it builds.
    tree = tmp_path_factory.mktemp("tree") / "ingest-mw"
    junk = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".*_cache", "site", "dist", "build")
    shutil.copytree(ROOT, tree, ignore=junk)
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(tree)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (path,) = out.glob("*.tar.gz")
    return tarfile.open(path)


def members(sdist: tarfile.TarFile) -> set[str]:
    return {name.partition("/")[2] for name in sdist.getnames()}


def test_the_sdist_ships_the_whole_test_tree_or_none(sdist: tarfile.TarFile) -> None:
    shipped = members(sdist)
    in_repo = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py") if "__pycache__" not in p.parts}
    assert in_repo <= shipped  # conftest.py, clients.py, serve_process.py, tests/contrib/... too
    # and what they load: the examples' tests and the bench scripts
    assert {"examples/conftest.py", "bench/pipeline.py", "bench/http.py"} <= shipped
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in shipped)


def test_the_sdist_has_the_license_changelog_and_docs(sdist: tarfile.TarFile) -> None:
    assert {"LICENSE", "CHANGELOG.md", "README.md", "mkdocs.yml", "docs/index.md", "ingest_mw/py.typed"} <= members(
        sdist
    )


def test_the_metadata(sdist: tarfile.TarFile) -> None:
    (pkg_info,) = [m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")]
    file = sdist.extractfile(pkg_info)
    assert file is not None
    meta = email.message_from_bytes(file.read())
    assert meta["Version"] == ingest_mw.__version__  # the one place of the version
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    classifiers = meta.get_all("Classifier")
    for classifier in ("Framework :: Django", "Framework :: Flask", "Typing :: Typed"):
        assert classifier in classifiers
    assert f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}" in classifiers
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Documentation", "Changelog", "Issues"}
