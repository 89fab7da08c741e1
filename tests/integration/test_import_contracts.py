"""The import-linter contracts of `make lint` hold, and each catches what it forbids."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> str:
    """`lint-imports` over the tree at `root`, its packages found there first."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "libs"), str(root)]),
    }
    done = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return done.stdout + done.stderr


def _copy_of_the_tree(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*_pb2*", "dashboard")
    for folder in ("libs", "services", "apps"):
        shutil.copytree(REPO / folder, target / folder, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    report = _lint_imports(_copy_of_the_tree(tmp_path))
    assert "BROKEN" not in report, report
    assert "Contracts: 5 kept, 0 broken." in report, report


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "services/lead/domain.py",
            "import grpc",
            "Domain modules do no I/O",
        ),
        (
            "services/consent/decisions.py",
            "from closedloop.consent.v1 import events_pb2",
            "Domain modules do no I/O",
        ),
        (
            "libs/closedloop/money.py",
            "import services.lead",
            "The shared library never imports a service or an entry point",
        ),
        (
            "libs/closedloop/relay/positions.py",
            "import apps.devrun",
            "The shared library never imports a service or an entry point",
        ),
        (
            "services/deal/api.py",
            "import services.lead.domain",
            "A service reaches another only through its published protos",
        ),
        (
            "services/insights/api.py",
            "import services.consent.application",
            "The read side never imports a write-side application",
        ),
        (
            "services/lead/domain.py",
            "import services.lead.api",
            "A write-side service layers downward",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = _copy_of_the_tree(tmp_path)
    with (root / module).open("a") as source:
        source.write(f"\n{line}  # a forbidden import\n")
    broken = [row for row in _lint_imports(root).splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), broken
