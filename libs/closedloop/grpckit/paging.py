"""Pages of list-like RPCs: one bounded page size and one opaque token for every API.

A list request carries `int32 page_size` and `string page_token`, its response
`string next_page_token`, empty on the last page (Google AIP-158). A page size of 0
means `DEFAULT_PAGE_SIZE` (100: a journey or a history of a typical person fits in
one page); one above `MAX_PAGE_SIZE` (1,000) is lowered to it, so no answer grows
without bound; a negative one is INVALID_ARGUMENT on `page_size`.

A token holds the position of the page's first item and a digest of the request's
other fields: a token used with other fields (another lead, another filter) is
INVALID_ARGUMENT on `page_token`, as is one that was never issued. The page size may
change from page to page. Positions count items in the answer's order: an item that
lands before a client's position between two of its calls (a change back-dated in
business time) is not shown to that client on that walk, and the item it pushed
along is shown twice.

The servicer: `page = page_request(request)` among its checks (its refusals join the
other violations), then `page.of(items)` on the whole ordered answer, or, where SQL
reads it, `page.read_from_start(rows)` on `OFFSET page.start LIMIT page.limit`.
A client: `async for response in every_page(lambda token: stub.List(...))`, each call
with `page_token=token` (`page_call(stub.List, request)` makes that call); or
`await joined_pages(call, "items")` for the whole list in one response, as a caller
that shows it all at once wants it (`"records.history"` for lists inside the
elements of one that every page repeats).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from closedloop.grpckit.validation import refuse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from google.protobuf.message import Message

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: The request fields that choose a page, left out of the request's digest.
PAGE_FIELDS = ("page_size", "page_token")

T = TypeVar("T")

_TOKEN_VERSION = 1
#: Version (1 byte), position (8 bytes, big-endian), digest of the request (8 bytes).
_TOKEN = struct.Struct(">BQ8s")


class PagedResponse(Protocol):
    next_page_token: str


ResponseT = TypeVar("ResponseT", bound=PagedResponse)


@dataclass(frozen=True)
class Page(Generic[T]):
    """The items of one page and the token of the next, "" after the last."""

    items: Sequence[T]
    next_page_token: str


@dataclass(frozen=True)
class PageRequest:
    """Which page a list request asks for: `size` items from position `start`."""

    start: int
    size: int
    digest: bytes

    def of(self, items: Sequence[T]) -> Page[T]:
        """The page asked for, cut from the whole ordered answer `items`."""
        return self.read_from_start(items[self.start : self.start + self.size + 1])

    def read_from_start(self, rows: Sequence[T]) -> Page[T]:
        """The page, from what a query read from `start` on, `limit` rows at most.

        For answers read by SQL (`OFFSET start LIMIT limit`): the one row beyond the
        page only tells that a next page exists.
        """
        more = len(rows) > self.size
        next_token = _token(self.start + self.size, self.digest) if more else ""
        return Page(rows[: self.size], next_token)

    @property
    def limit(self) -> int:
        """Rows to read from `start`: the page, and one that tells if more follow."""
        return self.size + 1


def page_request(
    request: Message,
    *,
    default_size: int = DEFAULT_PAGE_SIZE,
    max_size: int = MAX_PAGE_SIZE,
) -> PageRequest:
    """The page a request asks for; a bad size or token is refused on its field.

    Inside `validation.every_violation` a refusal is recorded and the first page
    stands in, like every other check.
    """
    size, token = (getattr(request, name) for name in PAGE_FIELDS)
    if size < 0:
        refuse("page_size", "must not be negative")
    size = min(size, max_size) if size > 0 else default_size
    digest = _digest(request)
    start = _start(token, digest) if token else 0
    if start is None:
        refuse("page_token", "is not a page token of this request")
        start = 0
    return PageRequest(start=start, size=size, digest=digest)


async def every_page(
    call: Callable[[str], Awaitable[ResponseT]],
) -> AsyncIterator[ResponseT]:
    """Every page of a list RPC in order: `call(token)` asks for the page of a token.

    The first call gets "", each next one the token the last response gave.
    """
    token = ""
    while True:
        response = await call(token)
        yield response
        token = response.next_page_token
        if not token:
            return


def page_call(
    method: Callable[..., Awaitable[ResponseT]], request: Message, **options: Any
) -> Callable[[str], Awaitable[ResponseT]]:
    """The call of a token: `method(request, **options)` with that page_token."""

    def call(token: str) -> Awaitable[ResponseT]:
        asked = type(request)()
        asked.CopyFrom(request)
        setattr(asked, "page_token", token)  # noqa: B010 - every list request has one
        return method(asked, **options)

    return call


async def joined_pages(
    call: Callable[[str], Awaitable[ResponseT]],
    field: str,
    *,
    at_most: int | None = None,
) -> ResponseT:
    """The first page holding the `field` items of every page: the whole list.

    A `field` of "outer.inner" names lists inside the elements of a repeated
    `outer` that every page repeats whole (a person's records, each with its paged
    history): each element's `inner` items of every page are joined to the element
    equal to it but for them, and items are counted over all of them. An element
    that changed between two pages (the list changed during the walk) is shown
    once more, with the items of the later pages.

    With `at_most`, the pages asked for stop once that many items are in, and the
    list is cut there. The answer's other fields are the first page's, and its
    next_page_token is empty: it stands for the whole answer.
    """
    joined: ResponseT | None = None
    async for page in every_page(call):
        if joined is None:
            joined = page
        else:
            _join(joined, page, field)
        if at_most is not None and _items(joined, field) >= at_most:
            break
    assert joined is not None  # noqa: S101 - every_page yields the first page
    if at_most is not None:
        left = at_most
        for items in _item_lists(joined, field):
            del items[left:]
            left -= len(items)
    joined.next_page_token = ""
    return joined


def _join(joined: Any, page: Any, field: str) -> None:
    """Adds the `field` items of `page` to those of `joined`."""
    outer, _, inner = field.partition(".")
    if not inner:
        getattr(joined, outer).extend(getattr(page, outer))
        return
    elements = getattr(joined, outer)
    known = [_without(element, inner) for element in elements]
    for element in getattr(page, outer):
        bare = _without(element, inner)
        if bare in known:
            getattr(elements[known.index(bare)], inner).extend(getattr(element, inner))
        else:
            elements.add().CopyFrom(element)
            known.append(bare)


def _without(element: Message, inner: str) -> bytes:
    """The element with no `inner` items, to tell which element of a page it is."""
    bare = type(element)()
    bare.CopyFrom(element)
    bare.ClearField(inner)
    return bare.SerializeToString(deterministic=True)


def _item_lists(response: object, field: str) -> list[Any]:
    """The lists of items `field` names: one, or one per element of its outer list."""
    outer, _, inner = field.partition(".")
    if not inner:
        return [getattr(response, outer)]
    return [getattr(element, inner) for element in getattr(response, outer)]


def _items(response: object, field: str) -> int:
    return sum(len(items) for items in _item_lists(response, field))


def _digest(request: Message) -> bytes:
    """What a token is bound to: the request's type and fields other than paging."""
    rest = type(request)()
    rest.CopyFrom(request)
    for name in PAGE_FIELDS:
        rest.ClearField(name)
    hashed = hashlib.blake2b(digest_size=8)
    hashed.update(request.DESCRIPTOR.full_name.encode())
    hashed.update(rest.SerializeToString(deterministic=True))
    return hashed.digest()


def _token(start: int, digest: bytes) -> str:
    packed = _TOKEN.pack(_TOKEN_VERSION, start, digest)
    return base64.urlsafe_b64encode(packed).rstrip(b"=").decode()


def _start(token: str, digest: bytes) -> int | None:
    """The position a token names, None if it is no token of this request."""
    try:
        packed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, start, bound_to = _TOKEN.unpack(packed)
    except (binascii.Error, struct.error, ValueError):
        return None
    if version != _TOKEN_VERSION or bound_to != digest:
        return None
    return int(start)
