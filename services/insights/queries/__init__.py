"""The questions the insights service answers, as queries on the read models.

Each query takes an open read transaction and the active tables of one read model
(template -> this generation's table), and returns plain values; `services.insights.
wire` turns them into the API's messages. Figures follow DOMAIN.md sections 3 and
6; the choices made where it is silent are documented on each query.
"""

from __future__ import annotations

import sqlalchemy as sa

#: A read model's tables as `ReadModels.open` gives them: template -> active table.
Tables = dict[sa.Table, sa.Table]


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None
