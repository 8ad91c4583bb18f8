"""Request ids: one per request, on every response and every log line of the request.

A caller's ``X-Request-ID`` is kept when it is 1-128 characters of ``[A-Za-z0-9._:-]``
(a proxy's or client's id then joins their logs to ours); anything else is replaced by
a fresh one, because the id goes into logs, audit entries and a response header, where
arbitrary text could forge lines or carry personal data.
"""

from __future__ import annotations

import json
import uuid

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.api.problems import PROBLEM_JSON, problem_body
from spine.service.audit import REQUEST_ID

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode("latin-1")


def accepted_or_new(raw: bytes | None) -> str:
    if raw is not None:
        try:
            candidate = raw.decode("ascii")
        except UnicodeDecodeError:
            candidate = ""
        if REQUEST_ID.fullmatch(candidate):
            return candidate
    return uuid.uuid4().hex


class RequestId:
    """Pure ASGI, so it wraps every response the app sends, errors included. Add it last
    (outermost of the app's middleware): then BodySizeLimit's 413 carries the id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope.get("headers", ()) if k == _HEADER_KEY), None)
        request_id = accepted_or_new(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Unhandled errors are answered by Starlette's outermost middleware, outside
            # this one, so the 500 is sent from here to carry the id. The id stays bound:
            # that middleware's error log, which follows, names the request.
            if not started:
                await _internal_error(scope, send_with_id)
            raise
        structlog.contextvars.reset_contextvars(**tokens)


async def _internal_error(scope: Scope, send: Send) -> None:
    body = json.dumps(
        problem_body(
            status=500,
            type_="internal-error",
            title="Internal error",
            instance=str(scope.get("path", "")),
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
