"""The OpenAPI document says what the API really does: how to authenticate, and every status it may answer.

- Security schemes: a bearer API token (scripts; no CSRF token needed) or the session cookie (the browser; then
  state-changing requests need the ``X-CSRF-Token`` header, else 403).
- Every operation documents the answers the shell gives whatever the route: 401 (no credentials), 403 (CSRF),
  404 (also what a user may not see), 413, 422 in the API's one shape ``{errors, message, detail}``, 503 and 507
  with ``Retry-After``. A schema-based fuzzer (tests/web/test_openapi_fuzz.py) holds the API to this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_BODY = {
    "type": "object",
    "properties": {
        "errors": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "field (or body.field, query.name) -> reason"},
        "message": {"type": "string", "description": "what to do, in the reader's language"},
        "detail": {"description": "the same refusal as FastAPI would state it (kept for older clients)"},
    },
    "required": ["errors", "message"],
}
DETAIL_BODY = {"type": "object", "properties": {"detail": {}}, "additionalProperties": True}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
FAULT_BODY = {"type": "object", "properties": {"detail": {"type": "string"}, "message": {"type": "string"}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


SHELL_RESPONSES: dict[str, dict[str, Any]] = {
    "401": {"description": "no valid credentials", "content": _json(DETAIL_BODY)},
    "403": {"description": "a state-changing request with the session cookie but without the right X-CSRF-Token "
                           "header (or a webhook's bad signature)", "content": _json(DETAIL_BODY)},
    "404": {"description": "not found, or not yours to see (the same answer)", "content": _json(DETAIL_BODY)},
    "409": {"description": "conflicts with the current state", "content": _json(DETAIL_BODY)},
    "413": {"description": "request body too large", "content": _json(DETAIL_BODY)},
    "422": {"description": "invalid input: every bad field named", "content": _json(ERROR_BODY)},
    "503": {"description": "busy, or the database unreachable: nothing was done, retry after the delay",
            "headers": RETRY_AFTER, "content": _json(FAULT_BODY)},
    "507": {"description": "storage full: nothing was stored", "headers": RETRY_AFTER, "content": _json(FAULT_BODY)},
}
SECURITY_SCHEMES = {
    "bearerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "pdn_<token>",
                    "description": "An API token from /account (scripts). No CSRF token is needed with it."},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "pdn_session",
                      "description": "The browser's session; state-changing requests then need X-CSRF-Token."},
}
PUBLIC_PATHS = ("/healthz", "/readyz")


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = document.setdefault("components", {})
        components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        document["security"] = [{"bearerToken": []}, {"sessionCookie": []}]
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for status, answer in SHELL_RESPONSES.items():
                    # Replaces FastAPI's 422 (a list) with what the API answers.
                    if status == "422" or status not in responses:
                        responses[status] = answer
                if path in PUBLIC_PATHS:
                    operation["security"] = []
        for unused in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(unused, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
