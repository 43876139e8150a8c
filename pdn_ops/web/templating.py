"""Jinja2 templates with autoescaping and the message catalogue as ``t(key)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from pdn_ops.accounts.auth import csrf_token, finish_response, principal_or_none
from pdn_ops.core.i18n import LANGUAGES, catalogue, translate
from pdn_ops.web.deps import LANG_COOKIE, get_language

TEMPLATES = Path(__file__).with_name("templates")


def make_environment(feature_dirs: Sequence[Path] = ()) -> Environment:
    """The shell's own templates (base, error, home) first, then each feature's ``templates/`` folder."""
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), *(FileSystemLoader(d) for d in feature_dirs)]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def translators(lang: str) -> tuple[Callable[..., str], Callable[..., str]]:
    """``t(key, **params)`` and ``tk(family, value, fallback=None)`` in ``lang``, for templates and PDF files."""

    def t(key: str, **params: object) -> str:
        return translate(key, lang, **params)

    def tk(family: str, value: object, fallback: str | None = None) -> str:
        # A key chosen at run time (a state, a category); tests check every family is complete. ``fallback``
        # is for open families such as audit events that other parts of pdn-ops may add to a timeline.
        key = f"{family}.{value}"
        if fallback is not None and key not in catalogue():
            return fallback
        return translate(key, lang)

    return t, tk


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    env: Environment = request.app.state.jinja
    lang = get_language(request)
    t, tk = translators(lang)
    context.setdefault("user", principal_or_none(request))
    context.setdefault("csrf_token", csrf_token(request))
    context.setdefault("tz", request.app.state.ctx.settings.tz)
    body = env.get_template(template).render(
        request=request, lang=lang, languages=LANGUAGES, t=t, tk=tk, **context
    )
    response = HTMLResponse(body, status_code=status_code)
    finish_response(request, response)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax")
    return response
