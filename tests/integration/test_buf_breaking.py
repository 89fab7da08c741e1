"""`buf breaking` against the released API image, as `make lint` runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROTOS = Path(__file__).resolve().parents[2] / "protos"
RELEASED = PROTOS / "released" / "closedloop-v0.1.0.binpb"
#: buf-bin installs the Buf CLI beside the interpreter.
BUF = Path(sys.executable).parent / "buf"

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="buf-bin is not installed")


def _breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(RELEASED)],
        cwd=protos,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_protos_keep_the_released_api() -> None:
    result = _breaking(PROTOS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_renumbered_field_breaks_it(tmp_path: Path) -> None:
    protos = tmp_path / "protos"
    shutil.copytree(PROTOS, protos, ignore=shutil.ignore_patterns("released"))
    service = protos / "closedloop" / "lead" / "v1" / "lead_service.proto"
    source = service.read_text()
    request = "message GetJourneyRequest {\n  string lead_id = 1;"
    assert request in source
    service.write_text(source.replace(request, request.replace("= 1;", "= 9;")))

    result = _breaking(protos)
    assert result.returncode != 0
    assert 'field "1" with name "lead_id" on message "GetJourneyRequest"' in (
        result.stdout
    ), result.stdout + result.stderr
