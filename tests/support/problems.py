"""The shape every Spine error answer has: RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"] == type_
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body
