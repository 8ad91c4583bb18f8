"""Schemathesis against the OpenAPI document: for generated requests, valid and not,
from two tenants and every role, the API never answers 5xx and never answers anything
its schema does not declare (status, content type, headers, body).

Schemathesis's own pytest loader does not run under pytest 9 (it rewrites a node
attribute pytest removed), so each operation is a parametrized test that drives
Hypothesis itself with the operation's case strategy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks as schemathesis_checks
from schemathesis.generation import GenerationMode
from starlette.testclient import TestClient

from spine.api.app import create_app
from spine.domain.auth import Role
from spine.service.container import Services
from spine.settings import Settings

#: Bounded, so `make test` stays fast: requests per operation and generation mode.
EXAMPLES = 20
TENANTS = ("fuzz-a", "fuzz-b")
CHECKS = [
    schemathesis_checks.not_a_server_error,
    schemathesis_checks.status_code_conformance,
    schemathesis_checks.content_type_conformance,
    schemathesis_checks.response_headers_conformance,
    schemathesis_checks.response_schema_conformance,
]


def _operations() -> list[tuple[str, str, GenerationMode]]:
    """Every (method, path) of the schema, with valid requests and, where it takes any
    input, invalid ones. Making the app opens nothing."""
    app = create_app(Settings(data_dir=Path("unused")))
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return [
        (method.upper(), path, mode)
        for path, item in paths.items()
        for method, operation in item.items()
        for mode in GenerationMode
        if mode is GenerationMode.POSITIVE
        or operation.get("parameters")
        or operation.get("requestBody")
    ]


@pytest.fixture
def live_schema(services: Services, auth: Any) -> Iterator[Any]:
    app = create_app(services=services)
    with TestClient(app) as client:  # runs the lifespan: services and workers start
        # Each tenant holds a document, so reads find real rows as well as missing ones.
        for tenant in TENANTS:
            response = client.post(
                "/v1/documents",
                files={"file": ("seed.txt", f"seed document of {tenant}".encode(), "text/plain")},
                headers=auth(tenant, Role.ADMIN),
            )
            assert response.status_code == 202, response.text
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_no_server_error_and_no_answer_outside_the_schema(
    live_schema: Any, auth: Any, method: str, path: str, mode: GenerationMode
) -> None:
    operation = live_schema[path][method]

    @given(
        case=operation.as_strategy(generation_mode=mode),
        tenant=st.sampled_from(TENANTS),
        role=st.sampled_from(list(Role)),
    )
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def requests_answer_within_the_schema(case: Any, tenant: str, role: Role) -> None:
        case.call_and_validate(headers=auth(tenant, role), checks=CHECKS)

    requests_answer_within_the_schema()
