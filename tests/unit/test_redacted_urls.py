"""URLs with credentials are printed and logged without them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from apps.devrun import SERVICES, banner
from closedloop.config import ConfigError, redacted_url
from closedloop.eventstore.store import StoreLocation

if TYPE_CHECKING:
    from pathlib import Path

#: A password planted in every URL; it must show nowhere.
PLANTED = "s3cret-pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"nats://lead:{PLANTED}@nats:4222", "nats://***@nats:4222"),
        (f"nats://{PLANTED}@nats:4222", "nats://***@nats:4222"),
        (
            f"nats://a:{PLANTED}@n1:4222,nats://b:{PLANTED}@n2:4222",
            "nats://***@n1:4222,nats://***@n2:4222",
        ),
        (f"nats://lead:p@{PLANTED}@nats:4222", "nats://***@nats:4222"),
        (
            f"postgresql://app:{PLANTED}@db:5432/leads?schema=lead",
            "postgresql://***@db:5432/leads?schema=lead",
        ),
        (
            f"postgresql://db/leads?user=app&password={PLANTED}&sslmode=require",
            "postgresql://db/leads?user=app&password=***&sslmode=require",
        ),
        ("nats://127.0.0.1:14222", "nats://127.0.0.1:14222"),
        ("sqlite:////data/odd@name/events.db", "sqlite:////data/odd@name/events.db"),
        ("memory://", "memory://"),
    ],
)
def test_credentials_are_replaced(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_the_make_run_banner_shows_no_credentials(tmp_path: Path) -> None:
    nats_url = f"nats://devrun:{PLANTED}@127.0.0.1:4222"
    env = {
        "CLOSEDLOOP_DATA_DIR": str(tmp_path),
        "CLOSEDLOOP_NATS_URL": nats_url,
        "CLOSEDLOOP_LEAD_STORE_URL": f"postgresql://lead:{PLANTED}@db/leads",
        "CLOSEDLOOP_PROJECTOR_STORE_URL": f"postgresql://read:{PLANTED}@db/read",
    }
    names = [name for name, _ in SERVICES]
    lines = banner(env, nats_url, ["closedloop-lead"], names)
    shown = "\n".join(lines)
    assert PLANTED not in shown
    assert "nats://***@127.0.0.1:4222" in shown
    assert "store: postgresql://***@db/leads" in shown
    assert "read models: postgresql://***@db/read" in shown


def test_a_store_url_refused_is_named_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        StoreLocation.parse(f"mysql://app:{PLANTED}@db/leads")
    assert "mysql://***@db/leads" in str(refused.value)
    assert PLANTED not in str(refused.value)
