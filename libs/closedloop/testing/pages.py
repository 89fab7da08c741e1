"""Walks a list RPC at a chosen page size, to compare its pages with the whole."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from closedloop.grpckit.paging import ResponseT, every_page

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


async def pages_of(
    call: Callable[[int, str], Awaitable[ResponseT]], page_size: int
) -> list[ResponseT]:
    """Every page, in order: `call(page_size, token)` asks for the page of a token."""
    return [page async for page in every_page(functools.partial(call, page_size))]
