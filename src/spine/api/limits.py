"""The upload size limit, enforced while the body streams in."""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.api.problems import PROBLEM_JSON, problem_body

#: Room for the multipart envelope (boundaries, part headers, small form fields).
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class BodyTooLarge(HTTPException):
    """Raised from inside ``receive``. It is FastAPI's HTTPException so that FastAPI's
    body parsing re-raises it as it is instead of turning it into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body exceeds the limit of {limit} bytes")


class BodySizeLimit:
    """Refuse a body over ``max_bytes``: at once from Content-Length when it is declared,
    else as soon as the streamed bytes pass the limit, before the rest is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.limit = max_bytes
        self.max_bytes = max_bytes + MULTIPART_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _reject(scope, send, self.limit)
                return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.limit)
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
            await _reject(scope, send, self.limit)


async def _reject(scope: Scope, send: Send, limit: int) -> None:
    body = json.dumps(
        problem_body(
            status=413,
            type_="payload-too-large",
            title="Upload exceeds the size limit",
            instance=str(scope.get("path", "")),
            detail=f"the body exceeds the limit of {limit} bytes",
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
