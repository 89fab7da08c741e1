"""Services collect garbage less often than CPython's defaults (see process.py)."""

from __future__ import annotations

import subprocess
import sys

from closedloop.process import GC_YOUNG_THRESHOLD


def test_tuning_freezes_start_up_and_raises_only_the_young_threshold() -> None:
    # In a fresh interpreter: the test process keeps its own collector settings.
    probe = (
        "import gc\n"
        "from closedloop.process import tune_garbage_collection\n"
        "before = gc.get_threshold()\n"
        "tune_garbage_collection()\n"
        "after = gc.get_threshold()\n"
        "print(after[0], after[1:] == before[1:], gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": ":".join(p for p in sys.path if p)},
    ).stdout.split()
    assert out == [str(GC_YOUNG_THRESHOLD), "True", "True"]
