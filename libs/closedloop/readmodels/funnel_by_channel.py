"""funnel_by_channel: each person's way through the funnel, by acquisition channel."""

from __future__ import annotations

import sqlalchemy as sa

from closedloop.readmodels.common import ReadModel
from closedloop.readmodels.identity import identity_tables

VERSION = 1

metadata = sa.MetaData()
identity = identity_tables("funnel_by_channel", VERSION, metadata)

#: The first time each lead reached a stage (MQL, SAL, opportunity).
stages = sa.Table(
    f"funnel_by_channel_stages_v{VERSION}",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("stage", sa.String(16), primary_key=True),
    sa.Column("first_at_us", sa.BigInteger, nullable=False),
)

deals = sa.Table(
    f"funnel_by_channel_deals_v{VERSION}",
    metadata,
    sa.Column("deal_id", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.String(64), nullable=False),
    sa.Column("opened_at_us", sa.BigInteger, nullable=True),
    sa.Column("won_at_us", sa.BigInteger, nullable=True),
    sa.Column("won_minor", sa.BigInteger, nullable=True),
    sa.Column("currency", sa.String(3), nullable=False, default=""),
    sa.Index(f"ix_funnel_by_channel_deals_lead_v{VERSION}", "lead_id"),
)

#: The read model proper: one row per person (surviving lead) once captured.
people = sa.Table(
    f"funnel_by_channel_v{VERSION}",
    metadata,
    sa.Column("lead_id", sa.String(64), primary_key=True),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sa.Column("first_channel", sa.String(64), nullable=False),
    sa.Column("last_channel", sa.String(64), nullable=False),
    sa.Column("mql_at_us", sa.BigInteger, nullable=True),
    sa.Column("sal_at_us", sa.BigInteger, nullable=True),
    sa.Column("opportunity_at_us", sa.BigInteger, nullable=True),
    sa.Column("won_at_us", sa.BigInteger, nullable=True),
    sa.Column("disqualified", sa.Boolean, nullable=False),
    # {"USD": minor units, ...}: the person's won deals.
    sa.Column("won_revenue", sa.Text, nullable=False),
    sa.Index(f"ix_funnel_by_channel_created_v{VERSION}", "created_at_us"),
)

#: Anonymous visitors, for the top of the funnel.
visitors = sa.Table(
    f"funnel_by_channel_visitors_v{VERSION}",
    metadata,
    sa.Column("anonymous_id", sa.String(256), primary_key=True),
    sa.Column("first_at_us", sa.BigInteger, nullable=False),
    sa.Column("first_channel", sa.String(64), nullable=False),
    # The last touch before identification (or the last one, if never identified).
    sa.Column("last_channel", sa.String(64), nullable=False),
    sa.Column("identified", sa.Boolean, nullable=False),
    sa.Index(f"ix_funnel_by_channel_visitors_first_v{VERSION}", "first_at_us"),
)

READ_MODEL = ReadModel(
    "funnel_by_channel", VERSION, (*identity.all(), stages, deals, people, visitors)
)
