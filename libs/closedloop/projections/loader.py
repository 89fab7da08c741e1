"""Finds the installed projections: entry points, plus an optional extra list.

Any installed distribution can add a read model by declaring an entry point in the
group `closedloop.projections` (name = the projection's name, value =
`module:Class`). `CLOSEDLOOP_EXTRA_PROJECTIONS` (comma-separated `module:Class`)
adds classes that are importable but not installed, which is handy for trying one
out. A projection that cannot be loaded is reported and left out; it never stops the
others.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pydantic import Field

from closedloop.config import CommaList, EnvSettings
from closedloop.projections.base import Projection, ProjectionDefinitionError

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "closedloop.projections"
EXTRA_ENV = "CLOSEDLOOP_EXTRA_PROJECTIONS"


@dataclass
class Registry:
    """The projections found, by name, and what could not be loaded."""

    projections: dict[str, type[Projection]] = field(default_factory=dict)
    #: name or `module:Class` -> where it came from
    sources: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> type[Projection]:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections)) or "none"
            msg = f"no projection named {name!r} is installed (installed: {known})"
            raise LookupError(msg) from None

    def names(self) -> list[str]:
        return sorted(self.projections)

    def add(self, cls: type[Projection], source: str) -> None:
        cls.check_definition()
        if cls.name in self.projections and self.projections[cls.name] is not cls:
            msg = (
                f"two projections are named {cls.name!r}: "
                f"{self.sources[cls.name]} and {source}"
            )
            raise ProjectionDefinitionError(msg)
        self.projections[cls.name] = cls
        self.sources[cls.name] = source


def load_class(spec: str) -> type[Projection]:
    """`package.module:Class` -> the class, checked to be a Projection."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        msg = f"{spec!r} is not of the form module:Class"
        raise ValueError(msg)
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not (isinstance(target, type) and issubclass(target, Projection)):
        msg = f"{spec} is not a Projection subclass"
        raise TypeError(msg)
    return target


class ProjectionsEnv(EnvSettings):
    extra_projections: CommaList = Field(default=(), validation_alias=EXTRA_ENV)


def discover(environ: Mapping[str, str] | None = None) -> Registry:
    extra = ProjectionsEnv.from_env(environ).extra_projections
    registry = Registry()
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.name} = {entry.value}"
        try:
            loaded = entry.load()
            if not (isinstance(loaded, type) and issubclass(loaded, Projection)):
                msg = f"{entry.value} is not a Projection subclass"
                raise TypeError(msg)  # noqa: TRY301 - reported with the others below
            if loaded.name != entry.name:
                msg = (
                    f"entry point {entry.name!r} names a projection called "
                    f"{loaded.name!r}"
                )
                raise ProjectionDefinitionError(msg)  # noqa: TRY301
            registry.add(loaded, source)
        except Exception as error:
            log.exception("cannot load projection %s", source)
            registry.errors[entry.name] = f"{type(error).__name__}: {error}"
    for spec in extra:
        try:
            registry.add(load_class(spec), f"{EXTRA_ENV} {spec}")
        except Exception as error:
            log.exception("cannot load projection %s", spec)
            registry.errors[spec] = f"{type(error).__name__}: {error}"
    return registry
