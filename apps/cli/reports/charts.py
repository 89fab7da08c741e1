"""`--chart FILE.png`: a report drawn with the dashboard's own charts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.cli.output import errors, fail

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from google.protobuf.message import Message


def chart_path(chart: Path | None) -> Path | None:
    """Checked before the call, so a wrong name fails before any work is done."""
    if chart is not None and chart.suffix.lower() != ".png":
        raise fail("--chart takes a .png file")
    return chart


def write_chart(response: Message, chart: Path | None) -> None:
    """Draws the answer into `chart` if one is asked for; matplotlib loads only then."""
    if chart is None:
        return
    from closedloop.insights.v1 import insights_service_pb2 as pb  # noqa: PLC0415
    from services.insights import charts  # noqa: PLC0415

    draw: dict[type[Message], Callable[[Any, Path], None]] = {
        pb.GetRevenueByChannelResponse: charts.revenue_chart,
        pb.GetFunnelResponse: charts.funnel_chart,
        pb.GetCustomerJourneyResponse: charts.journey_chart,
        pb.GetConsentStatusResponse: charts.consent_chart,
        pb.GetCustomerValueResponse: charts.value_chart,
    }
    draw[type(response)](response, chart)
    errors.print(f"chart written to {chart}")
