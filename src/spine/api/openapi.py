"""What the OpenAPI document says about errors: every route declares the problem+json
answers it can give, so a client (and the schema fuzzer) knows them all in advance."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spine.api.problems import PROBLEM_JSON


class Problem(BaseModel):
    """RFC 9457 problem details; extension members may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Stable, machine-readable problem type.")
    title: str
    status: int
    instance: str = Field(description="The request path.")
    detail: str | None = None


_DESCRIPTIONS = {
    400: "Malformed request (e.g. a broken multipart body).",
    401: "Missing or invalid bearer token.",
    403: "The token's role or scopes do not allow this.",
    404: "No such resource in the caller's tenant.",
    409: "The resource's state does not allow this.",
    413: "The body exceeds its size limit.",
    415: "Unsupported or empty file.",
    422: "Invalid request.",
    429: "Rate limit or overload: retry after Retry-After seconds.",
    431: "Request headers too large.",
    503: "A dependency is unavailable: retry after Retry-After seconds.",
}

#: Any route may answer these: authentication, rate limits, size limits, validation, outage.
COMMON = (400, 401, 403, 413, 422, 429, 431, 503)


def problem_responses(*statuses: int, common: bool = True) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status (and the common ones unless
    ``common=False``) as problem+json."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in sorted({*(COMMON if common else ()), *statuses})
    }
