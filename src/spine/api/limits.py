"""Request size limits: headers (431) and bodies (413), checked before a route runs.

Bodies are checked while they stream in, so an oversized one is refused after at most
the limit's worth of bytes, never read whole first.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.api.problems import PROBLEM_JSON, problem_body

#: Room for the multipart envelope (boundaries, part headers, small form fields).
MULTIPART_OVERHEAD_BYTES = 64 * 1024

#: The one upload route. Every other route takes at most a small JSON body.
UPLOAD_ROUTES: frozenset[tuple[str, str]] = frozenset({("POST", "/v1/documents")})

#: Per header line on the wire: ": " and CRLF. Counted so that many tiny headers add up.
_HEADER_LINE_OVERHEAD = 4


class BodyTooLarge(HTTPException):
    """Raised from inside ``receive``. It is FastAPI's HTTPException so that FastAPI's
    body parsing re-raises it as it is instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body exceeds the limit of {limit} bytes")


def _route_path(scope: Scope) -> str:
    """The path the router matches: without the root path a proxy mounts the app under."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.rstrip("/") or "/"


class BodySizeLimit:
    """Refuse a body over its route's limit: ``max_bytes`` for every route but the upload
    routes, which get ``upload_bytes`` plus the multipart envelope (when ``upload_bytes``
    is given). At once from Content-Length when it is declared, else as soon as the
    streamed bytes pass the limit, before the rest is read.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        upload_bytes: int | None = None,
        upload_routes: Collection[tuple[str, str]] = UPLOAD_ROUTES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.upload_routes = frozenset(upload_routes) if upload_bytes is not None else frozenset()

    def limits_for(self, scope: Scope) -> tuple[int, int]:
        """(the limit to report, the bytes actually allowed) for this request."""
        if self.upload_bytes is not None and (
            (scope.get("method", ""), _route_path(scope)) in self.upload_routes
        ):
            return self.upload_bytes, self.upload_bytes + MULTIPART_OVERHEAD_BYTES
        return self.max_bytes, self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, allowed = self.limits_for(scope)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > allowed:
                await _reject_body(scope, send, limit)
                return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowed:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await _reject_body(scope, send, limit)


class HeaderSizeLimit:
    """Refuse a request whose headers total more than ``max_bytes`` (names, values and
    line overhead) or number more than ``max_count``: 431, before any of it is parsed
    further (tokens, cookies, multipart boundaries)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_count: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_count = max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        total = sum(len(name) + len(value) + _HEADER_LINE_OVERHEAD for name, value in headers)
        if len(headers) > self.max_count:
            detail = f"{len(headers)} request headers; at most {self.max_count} are accepted"
        elif total > self.max_bytes:
            detail = f"the request headers total {total} bytes; the limit is {self.max_bytes}"
        else:
            await self.app(scope, receive, send)
            return
        await _send_problem(
            scope,
            send,
            status=431,
            type_="request-header-fields-too-large",
            title="Request headers too large",
            detail=detail,
        )


async def _reject_body(scope: Scope, send: Send, limit: int) -> None:
    await _send_problem(
        scope,
        send,
        status=413,
        type_="payload-too-large",
        title="Upload exceeds the size limit",
        detail=f"the body exceeds the limit of {limit} bytes",
    )


async def _send_problem(
    scope: Scope, send: Send, *, status: int, type_: str, title: str, detail: str
) -> None:
    body = json.dumps(
        problem_body(
            status=status,
            type_=type_,
            title=title,
            instance=str(scope.get("path", "")),
            detail=detail,
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                # The rest of the request is not read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
