"""A schema-based fuzzer (schemathesis) over the OpenAPI document, on both engines: whatever it sends, the API
answers no 5xx and nothing the document does not describe (status codes and bodies). Authenticated as a
supervisor with an API token; the operations are driven one by one with Hypothesis, a few examples each."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from pdn_ops.accounts import service as accounts
from pdn_ops.core.db.engine import transaction
from tests.complaints.world import World, principal_named

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_the_api_answers_every_fuzzed_request_as_documented(world: World) -> None:
    with transaction(world.ctx.sessions) as session:
        token, _ = accounts.create_token(session, principal_named(session, "supervisor"), "fuzz")
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", world.app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 10
    failures: list[str] = []
    answered: dict[int, int] = {}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
            answered[response.status_code] = answered.get(response.status_code, 0) + 1

        try:
            fuzz()
        except Exception as exc:  # collected, so one run names every operation that breaks its document
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    assert not failures, "\n\n".join(failures)
    # The fuzzer reached the routes (not only the edge's refusals): some answers were successes.
    assert sum(answered.values()) >= 3 * len(operations), answered
    assert any(200 <= status < 300 for status in answered), answered


def test_the_document_declares_its_security_and_the_shell_answers(world: World) -> None:
    document = world.client().get("/api/v1/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"bearerToken", "sessionCookie"}
    assert document["security"] == [{"bearerToken": []}, {"sessionCookie": []}]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"401", "403", "404", "422", "503"} <= set(responses), (method, path)
            assert responses["422"]["content"]["application/json"]["schema"]["required"] == ["errors", "message"]
            assert "CSRF" in responses["403"]["description"]
            assert "Retry-After" in responses["503"]["headers"]
