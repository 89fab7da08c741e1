"""The insights dashboard's own variables: where its HTTP server binds."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from closedloop.config import EnvSettings


class DashboardEnv(EnvSettings):
    """CLOSEDLOOP_INSIGHTS_HTTP_HOST and _PORT; unset, the dashboard's defaults."""

    model_config = SettingsConfigDict(env_prefix="CLOSEDLOOP_INSIGHTS_")

    http_host: str | None = None
    #: 0: a free port.
    http_port: int | None = Field(default=None, ge=0, le=65535)
