"""The options every report takes: its period, JSON instead of a table, a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
ChartOption = Annotated[
    Path | None, typer.Option("--chart", help="Also draw it into this PNG file.")
]
FromOption = Annotated[str, typer.Option("--from", help="First month, e.g. 2026-01.")]
ToOption = Annotated[str, typer.Option("--to", help="Last month, e.g. 2026-03.")]
