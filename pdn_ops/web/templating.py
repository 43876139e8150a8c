"""Jinja2 templates with autoescaping and the message catalogue as ``t(key)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from pdn_ops.core.i18n import LANGUAGES, catalogue, translate
from pdn_ops.core.i18n.formatting import Formatter
from pdn_ops.web.deps import LANG_COOKIE, get_language, runtime_of
from pdn_ops.web.menu import menu_for

TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True, slots=True)
class PageIdentity:
    """How the shell learns who reads a page (for the menu) and the form token; the accounts feature provides it
    and the composition root sets it as ``app.state.page_identity``."""

    user: Callable[[Request], object | None]
    csrf_token: Callable[[Request], str]
    finish: Callable[[Request, Response], None]  # e.g. set the cookie a fresh form token needs
    # Who reads the page if the request already knows it, without any lookup (error pages, see ``render``).
    known_user: Callable[[Request], object | None] = lambda request: None
    known_csrf_token: Callable[[Request], str] = lambda request: ""


ANONYMOUS = PageIdentity(user=lambda request: None, csrf_token=lambda request: "",
                         finish=lambda request, response: None)


def make_environment(feature_dirs: Sequence[Path] = ()) -> Environment:
    """The shell's own templates (base, error, home) first, then each feature's ``templates/`` folder."""
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(TEMPLATES), *(FileSystemLoader(d) for d in feature_dirs)]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        # Templates are read and compiled once, never checked again: an error page may render on the event loop,
        # which must not stat or read files (edit a template, restart the service).
        auto_reload=False,
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


@dataclass(frozen=True, slots=True)
class Office:
    """The office named in the header and on letterheads (settings ``PDN_OPS_OFFICE_*``)."""

    government: str
    name: str
    address: str
    logo: bool


FLASH_COOKIE = "pdn_flash"


def flash_redirect(url: str, code: str) -> RedirectResponse:
    """Redirect after an action with a confirmation: the next page shows ``flash.CODE`` once.

    The code travels in a short-lived cookie, not in the address (which stays the page's own), and only catalogue
    keys are shown, so nothing a user typed is echoed back.
    """
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(FLASH_COOKIE, code, max_age=60, httponly=True, samesite="lax")
    return response


def flash_text(request: Request, lang: str) -> str | None:
    """``flash.CODE`` for a code from the one-time cookie or from ``?ok=CODE`` (a link that must say it itself)."""
    code = request.query_params.get("ok", "") or request.cookies.get(FLASH_COOKIE, "")
    key = f"flash.{code}"
    return translate(key, lang) if code and key in catalogue() else None


def _has_lab(request: Request) -> bool:
    # The lab panel is mounted only beside the demo's lab; the answer never changes for an app, so keep it.
    known = getattr(request.app.state, "has_lab_panel", None)
    if known is None:
        known = any(getattr(route, "path", None) == "/lab" for route in request.app.routes)
        request.app.state.has_lab_panel = known
    return bool(known)


def render(request: Request, template: str, status_code: int = 200, *, lookup: bool = True,
           headers: Mapping[str, str] | None = None, **context: Any) -> HTMLResponse:
    """A page in the reader's language. ``lookup=False`` is for error pages, which may run on the event loop
    while the database is slow, locked or gone: they show only what the request already knows of its reader and
    touch neither the database nor a file (the templates are compiled once and cached by Jinja)."""
    env: Environment = request.app.state.jinja
    lang = get_language(request)
    t, tk = translators(lang)
    identity: PageIdentity = getattr(request.app.state, "page_identity", ANONYMOUS)
    settings = runtime_of(request).settings
    if lookup:
        context.setdefault("user", identity.user(request))
        context.setdefault("csrf_token", identity.csrf_token(request))
    else:
        context.setdefault("user", identity.known_user(request))
        context.setdefault("csrf_token", identity.known_csrf_token(request))
    context.setdefault("tz", settings.tz)
    context.setdefault("fmt", Formatter(lang, settings.tz))
    context.setdefault("flash", flash_text(request, lang))
    context.setdefault("office", Office(settings.office_government, settings.office_name, settings.office_address,
                                        settings.office_logo is not None))
    user = context["user"]
    context.setdefault("menu", menu_for(getattr(user, "role", None), request.url.path, demo=_has_lab(request)))
    body = env.get_template(template).render(
        request=request, lang=lang, languages=LANGUAGES, t=t, tk=tk, **context
    )
    response = HTMLResponse(body, status_code=status_code, headers=dict(headers or {}))
    if lookup:
        identity.finish(request, response)
    if FLASH_COOKIE in request.cookies and not template.rsplit("/", 1)[-1].startswith("_"):
        response.delete_cookie(FLASH_COOKIE)  # shown once, on the full page (not on a polled fragment)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax")
    return response
