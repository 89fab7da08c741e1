"""customer_value: revenue per customer over time, and how each customer was won."""

from __future__ import annotations

import sqlalchemy as sa

from closedloop.readmodels.common import ReadModel
from closedloop.readmodels.identity import identity_tables

VERSION = 1

#: How a customer was acquired (DOMAIN.md section 6), from the first touch.
EARNED = "earned"
BOUGHT = "bought"
UNKNOWN = "unknown"

metadata = sa.MetaData()
identity = identity_tables("customer_value", VERSION, metadata)

deals = sa.Table(
    f"customer_value_deals_v{VERSION}",
    metadata,
    sa.Column("deal_id", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False),
    sa.Column("won_at_us", sa.BigInteger, nullable=False),
    sa.Index(f"ix_customer_value_deals_lead_v{VERSION}", "lead_id"),
)

revenues = sa.Table(
    f"customer_value_revenue_v{VERSION}",
    metadata,
    sa.Column("revenue_id", sa.String(64), primary_key=True),
    sa.Column("deal_id", sa.String(64), nullable=False),
    sa.Column("lead_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("recognized_at_us", sa.BigInteger, nullable=False),
    sa.Index(f"ix_customer_value_revenue_lead_v{VERSION}", "lead_id"),
)

#: The read model proper: one row per customer (a person with a won deal).
customers = sa.Table(
    f"customer_value_v{VERSION}",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("acquired_at_us", sa.BigInteger, nullable=False),
    sa.Column("cohort_month", sa.String(7), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("interaction", sa.String(32), nullable=False),
    sa.Column("acquisition", sa.String(8), nullable=False),
)

#: Recognised revenue per customer, month and currency (negative for churn).
monthly = sa.Table(
    f"customer_value_monthly_v{VERSION}",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Index(f"ix_customer_value_monthly_month_v{VERSION}", "month"),
)

READ_MODEL = ReadModel(
    "customer_value", VERSION, (*identity.all(), deals, revenues, customers, monthly)
)
