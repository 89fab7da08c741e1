"""The check every bad-input table shares: refused rightly, and nothing stored."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from closedloop.grpckit.errors import field_violations


async def _max_notification_id(store: Any) -> int:
    return await asyncio.to_thread(store.recorder.max_notification_id) or 0


async def assert_refused(
    store: Any,
    stub: Any,
    method: str,
    request: Any,
    *,
    code: grpc.StatusCode,
    field: str = "",
    says: str = "",
    every: tuple[str, ...] = (),
) -> None:
    """Fails with `code`, names `field` or says `says`, shows no trace, writes nothing.

    INVALID_ARGUMENT names the field in the message, and its google.rpc.BadRequest
    details list the fields of `every` violation in order (`field` alone by default).
    """
    before = await _max_notification_id(store)
    call = getattr(stub, method)(request, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = raised.value
    after = await _max_notification_id(store)

    details = error.details() or ""
    violations = field_violations(error)
    assert error.code() == code, f"{error.code()}: {details}"
    assert "Traceback" not in details, details
    assert 'File "' not in details, details
    assert after == before, f"{method} wrote {after - before} event(s): {details}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert details.startswith(f"{field}: "), details
        assert [v.field for v in violations] == list(every or (field,)), violations
    else:
        assert not violations, violations
        assert says in details, details
