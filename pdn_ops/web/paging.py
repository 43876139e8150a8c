"""Paging of the lists that had none (/fleet, /users, /remediation/runs): a cursor and a bounded limit.

The cursor is the last id seen (keyset paging: page 2,000 costs what page 1 costs); it is checked like every id
(0..MAX_ID, else 422). JSON lists keep their shape (a list, or the fleet object) and name the next page in a
``Link: <...>; rel="next"`` header and ``X-Next-Cursor``; pages show a link to the next page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query, Request, Response

from pdn_ops.core.db.tables import MAX_ID

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    after: int | None  # the last id of the previous page
    limit: int

    def cut(self, rows: Sequence[T]) -> tuple[list[T], bool]:
        """``rows`` fetched with ``limit + 1``: the page, and whether there is more."""
        return list(rows[:self.limit]), len(rows) > self.limit


def page_request(cursor: Annotated[str | None, Query(max_length=12)] = None,
                 limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT) -> PageRequest:
    if cursor in (None, ""):
        return PageRequest(None, limit)
    assert cursor is not None
    if not cursor.isdigit() or int(cursor) > MAX_ID:
        raise HTTPException(status_code=422, detail={"errors": {"cursor": "invalid"}})
    return PageRequest(int(cursor), limit)


Paging = Annotated[PageRequest, Depends(page_request)]


def next_link(request: Request, response: Response, next_cursor: int | None) -> str | None:
    """Set the next page's headers on ``response``; returns its URL (None on the last page)."""
    if next_cursor is None:
        return None
    url = str(request.url.include_query_params(cursor=str(next_cursor)))
    response.headers["Link"] = f'<{url}>; rel="next"'
    response.headers["X-Next-Cursor"] = str(next_cursor)
    return url


def next_url(request: Request, next_cursor: int | None) -> str | None:
    if next_cursor is None:
        return None
    url = request.url.include_query_params(cursor=str(next_cursor))
    return f"{url.path}?{url.query}"
