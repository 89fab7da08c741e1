"""The authenticated caller, whichever way it proved who it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["service", "application"]


@dataclass(frozen=True)
class Principal:
    """A service (by its certificate) or an application or person (by a token)."""

    subject: str
    scopes: frozenset[str]
    kind: Kind

    def may(self, permission: str) -> bool:
        return permission in self.scopes
