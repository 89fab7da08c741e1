"""revenue_by_channel: attributed revenue and spend per channel, campaign and month."""

from __future__ import annotations

import sqlalchemy as sa

from closedloop.readmodels.common import ReadModel

VERSION = 1
#: The conversion kinds a row is credited for.
WON = "won"
RECOGNIZED = "revenue_recognized"
#: Fractional customers are kept in millionths, as integers: sums are then exact and
#: the same in any order.
CUSTOMER_UNITS = 1_000_000

metadata = sa.MetaData()

#: One row per conversion and model: what was credited, to subtract it again if the
#: same conversion is credited anew, and to recognise an event seen before.
conversions = sa.Table(
    f"revenue_by_channel_conversions_v{VERSION}",
    metadata,
    sa.Column("model_key", sa.String(200), primary_key=True),
    sa.Column("deal_id", sa.String(64), primary_key=True),
    sa.Column("conversion_kind", sa.String(32), primary_key=True),
    sa.Column("revenue_id", sa.String(64), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(80), nullable=False),
    sa.Column("lead_id", sa.String(64), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    # JSON: a list of [channel, campaign, amount, customers] per credit.
    sa.Column("credits", sa.Text, nullable=False),
    sa.Column("fallback", sa.String(200), nullable=False, default=""),
    sa.Index(f"ix_revenue_by_channel_conversions_deal_v{VERSION}", "deal_id"),
)

#: The read model proper: credited revenue per model, kind, month, channel, campaign.
revenue = sa.Table(
    f"revenue_by_channel_v{VERSION}",
    metadata,
    sa.Column("model_key", sa.String(200), primary_key=True),
    sa.Column("conversion_kind", sa.String(32), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("campaign", sa.String(256), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("revenue_minor", sa.BigInteger, nullable=False),
    sa.Column("customers_micro", sa.BigInteger, nullable=False),
    sa.Column("conversions", sa.BigInteger, nullable=False),
    sa.Index(f"ix_revenue_by_channel_model_v{VERSION}", "model", "conversion_kind"),
)

spends = sa.Table(
    f"revenue_by_channel_spends_v{VERSION}",
    metadata,
    sa.Column("spend_id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(80), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("campaign", sa.String(256), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("period_start_us", sa.BigInteger, nullable=False),
    sa.Column("period_end_us", sa.BigInteger, nullable=False),
    # {"2026-01": amount, ...}: the spend split over the months of its period.
    sa.Column("months", sa.Text, nullable=False),
)

spend_by_month = sa.Table(
    f"revenue_by_channel_spend_v{VERSION}",
    metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("campaign", sa.String(256), primary_key=True),
    sa.Column("spend_minor", sa.BigInteger, nullable=False),
)

READ_MODEL = ReadModel(
    "revenue_by_channel", VERSION, (conversions, revenue, spends, spend_by_month)
)
