"""Who may call what: each RPC's permission and the personal fields, from the protos.

Each RPC declares the permission it needs with the `(closedloop.common.v1.permission)`
method option, and each field holding personal data carries
`(closedloop.common.v1.personal)`; both are read here from the generated descriptors,
so the protos stay the one place they are written. Nothing here enforces anything: a
server interceptor asks `decide` for every call, and answers are passed through
`clear_personal_fields` for callers without `personal:read`.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import descriptor_pool

import closedloop
from closedloop.common.v1 import permissions_pb2
from closedloop.trust.permissions import Permission

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping

    from google.protobuf.descriptor import (
        Descriptor,
        FieldDescriptor,
        MethodDescriptor,
        ServiceDescriptor,
    )
    from google.protobuf.message import Message


KNOWN_PERMISSIONS = frozenset(Permission)
# What an RPC may declare: personal:read guards fields, never a whole call.
RPC_PERMISSIONS = KNOWN_PERMISSIONS - {Permission.PERSONAL_READ}


def full_method_name(method: MethodDescriptor) -> str:
    """The name a call carries: `/closedloop.lead.v1.LeadService/GetLead`."""
    return f"/{method.containing_service.full_name}/{method.name}"


# protoc's stubs type the extension handles as plain field descriptors, hence the
# ignores where they index an options message.


def method_permission(method: MethodDescriptor) -> str | None:
    """The permission the RPC declares; None when it declares none (refused to all)."""
    options = method.GetOptions()
    if not options.HasExtension(permissions_pb2.permission):  # type: ignore[arg-type]
        return None
    return str(options.Extensions[permissions_pb2.permission]) or None  # type: ignore[index]


def service_permissions(service: ServiceDescriptor) -> dict[str, str | None]:
    """Every method of a service by its full name, with its permission or None."""
    return {full_method_name(m): method_permission(m) for m in service.methods}


def permission_table(service_names: Iterable[str]) -> dict[str, str | None]:
    """The permissions of the services a server registers, by their full names.

    The services' generated modules must be imported already (registering a servicer
    does that): the names are looked up in the default descriptor pool, and an
    unknown one is a KeyError, so a server cannot start with a table missing a service.
    """
    pool = descriptor_pool.Default()
    table: dict[str, str | None] = {}
    for name in service_names:
        table.update(service_permissions(pool.FindServiceByName(name)))
    return table


def every_service() -> tuple[ServiceDescriptor, ...]:
    """Every service of the generated `*_service_pb2` modules, in path order."""
    root = Path(closedloop.__file__).parent
    services: list[ServiceDescriptor] = []
    for path in sorted(root.glob("*/v*/*_service_pb2.py")):
        name = ".".join(("closedloop", *path.relative_to(root).with_suffix("").parts))
        generated = importlib.import_module(name)
        services.extend(generated.DESCRIPTOR.services_by_name.values())
    return tuple(services)


@dataclass(frozen=True)
class Decision:
    """Whether a call may proceed; when not, the reason names what it lacks."""

    allowed: bool
    method: str
    # The permission the method declares; None when it declares none.
    permission: str | None
    reason: str = ""


def decide(
    scopes: Collection[str], method: str, table: Mapping[str, str | None]
) -> Decision:
    """Default deny: allowed only if the method declares a permission the caller holds.

    `method` is the full name a call carries; `table` maps those names to their
    permissions (`permission_table`). A method missing from the table, or declaring no
    permission, is refused whatever the scopes.
    """
    permission = table.get(method)
    if permission is None:
        return Decision(
            allowed=False,
            method=method,
            permission=None,
            reason=f"{method} declares no permission: every call is refused",
        )
    if permission not in scopes:
        return Decision(
            allowed=False,
            method=method,
            permission=permission,
            reason=f"missing permission {permission}",
        )
    return Decision(allowed=True, method=method, permission=permission)


def may_read_personal(scopes: Collection[str]) -> bool:
    """Whether answers keep their personal fields for this caller."""
    return Permission.PERSONAL_READ in scopes


def is_personal(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[permissions_pb2.personal])  # type: ignore[index]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _value_type(field: FieldDescriptor) -> Descriptor | None:
    """The message a field holds (a map's value message), or None for scalars."""
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        return message.fields_by_name["value"].message_type
    return message


def personal_fields(message: Descriptor) -> tuple[str, ...]:
    """Dotted paths of the personal fields of a message type, nested ones included.

    A path goes through repeated and map fields as through single ones
    (`changes.evidence.request_origin`); a message that contains itself is walked
    once along each path.
    """
    return tuple(_personal_paths(message, "", frozenset()))


def _personal_paths(
    message: Descriptor, prefix: str, enclosing: frozenset[str]
) -> Iterator[str]:
    inside = enclosing | {message.full_name}
    for field in message.fields:
        path = prefix + field.name
        if is_personal(field):
            yield path
            continue
        nested = _value_type(field)
        if nested is not None and nested.full_name not in inside:
            yield from _personal_paths(nested, path + ".", inside)


@functools.cache
def _holds_personal(message: Descriptor) -> bool:
    return bool(personal_fields(message))


def clear_personal_fields(message: Message) -> None:
    """Empties, in place, every personal field of the message and of those it holds."""
    for field, value in message.ListFields():
        if is_personal(field):
            message.ClearField(field.name)
            continue
        nested = _value_type(field)
        if nested is None or not _holds_personal(nested):
            continue
        if _is_map(field):
            items = value.values()
        elif field.is_repeated:
            items = value
        else:
            items = (value,)
        for item in items:
            clear_personal_fields(item)
