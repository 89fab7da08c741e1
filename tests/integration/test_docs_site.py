"""The documentation site builds strictly, and a broken link or anchor fails it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apps.protodocs import write_reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """mkdocs.yml and docs/, with the reference generated as `make docs` does."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(
        ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("reference")
    )
    write_reference(ROOT / "protos", tmp_path / "docs" / "reference")
    return tmp_path


def build(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"],
        cwd=site,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_the_site_builds_with_every_page_in_the_nav(site: Path) -> None:
    result = build(site)

    assert result.returncode == 0, result.stderr
    assert (site / "build/site/reference/closedloop.lead.v1/index.html").exists()


def test_a_link_to_a_missing_page_or_anchor_fails_the_build(site: Path) -> None:
    page = site / "docs" / "deploy.md"
    page.write_text(
        page.read_text()
        + "\n[gone](no-such-page.md) and [lost](events.md#no-such-anchor)\n"
    )

    result = build(site)

    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
    assert "#no-such-anchor" in result.stderr


def test_a_page_left_out_of_the_nav_fails_the_build(site: Path) -> None:
    (site / "docs" / "orphan.md").write_text("# Nobody links here\n")

    result = build(site)

    assert result.returncode != 0
    assert "orphan.md" in result.stderr


def test_the_readmes_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]

    assert local, "the README links into the documentation"
    assert [t for t in local if not (ROOT / t).exists()] == []
