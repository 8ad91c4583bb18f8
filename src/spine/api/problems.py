"""One error envelope for the whole API: RFC 9457 ``application/problem+json``.

Every error response is built here. Nothing else renders errors, and no stack trace or
driver message ever reaches a client.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from spine.errors import SpineError

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("spine.api")

#: Problem types for errors raised by the framework rather than by Spine.
HTTP_STATUS_TYPES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Missing or invalid credentials"),
    403: ("forbidden", "Not allowed for this role"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Upload exceeds the size limit"),
    415: ("unsupported-media-type", "Unsupported or empty file"),
    422: ("invalid-request", "Invalid request"),
}


def problem_body(
    *, status: int, type_: str, title: str, instance: str, detail: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "instance": instance}
    if detail:
        body["detail"] = detail
    return body


def problem(
    request: Request,
    *,
    status: int,
    type_: str,
    title: str,
    detail: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = problem_body(
        status=status, type_=type_, title=title, instance=request.url.path, detail=detail
    )
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(SpineError)
    async def _spine_error(request: Request, exc: SpineError) -> JSONResponse:
        headers: dict[str, str] = {}
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        if exc.status >= 500:
            log.error("request.failed", error_type=exc.type, detail=exc.message)
        return problem(
            request,
            status=exc.status,
            type_=exc.type,
            title=exc.title,
            detail=exc.message,
            headers=headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem(
            request,
            status=422,
            type_="invalid-request",
            title="Invalid request",
            detail=detail,
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_, title = HTTP_STATUS_TYPES.get(exc.status_code, ("http-error", "HTTP error"))
        return problem(
            request,
            status=exc.status_code,
            type_=type_,
            title=title,
            detail=str(exc.detail) if exc.detail else None,
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request.unhandled_error", error=type(exc).__name__)
        return problem(request, status=500, type_="internal-error", title="Internal error")
