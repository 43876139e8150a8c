"""Annotated dependency aliases of the web shell: the shared parts, a database session, the reader's language.

Who is asking (``CurrentUser``, ``Staff``, the OPD roles) is the accounts feature's: ``pdn_ops.accounts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from pdn_ops.core.db.engine import transaction
from pdn_ops.core.i18n import LANGUAGES, negotiate
from pdn_ops.core.parts import CoreParts

LANG_COOKIE = "pdn_lang"


def runtime_of(request: Request) -> CoreParts:
    """The app's runtime (``pdn_ops.app.runtime.Runtime``), seen as the parts every feature shares."""
    runtime = request.app.state.runtime
    assert isinstance(runtime, CoreParts)
    return runtime


# Async on purpose: FastAPI runs a sync dependency in the thread pool, a hop that costs more than this lookup.
async def get_ctx(request: Request) -> CoreParts:
    return runtime_of(request)


def get_session(ctx: Annotated[CoreParts, Depends(get_ctx)]) -> Iterator[Session]:
    with ctx.sessions() as session, session.begin():
        yield session


def get_language(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return negotiate(request.headers.get("accept-language"))


Ctx = Annotated[CoreParts, Depends(get_ctx)]
# scope="function": the commit happens before the response is sent. After it (FastAPI's default for a yield
# dependency), a failed commit could follow a page that said the work was done, and surfaced as a traceback.
DbSession = Annotated[Session, Depends(get_session, scope="function")]
Language = Annotated[str, Depends(get_language)]


@contextmanager
def unit_of_work(ctx: CoreParts) -> Iterator[Session]:
    """Committed before the route builds its redirect, so the next page sees the change.

    It starts as a writer on SQLite (BEGIN IMMEDIATE), so concurrent state changes queue instead of failing.
    """
    with transaction(ctx.sessions) as session:
        session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
        yield session
