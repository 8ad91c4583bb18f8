"""Per-subject and per-tenant rate limits, and the RateLimit headers that report them.

Headers follow draft-ietf-httpapi-ratelimit-headers-06 (December 2022), the last version
with the four separate fields that clients and gateways widely read: ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` of the bucket closest to empty, and
``RateLimit-Policy`` listing both buckets. Later versions fold the first three into one
``RateLimit`` field; moving to them changes only ``rate_limit_headers``.

A token bucket maps onto the draft's quota policy as "``burst`` requests per the time an
empty bucket takes to refill": ``RateLimit-Limit`` is the bucket's capacity and
``RateLimit-Reset`` the seconds until it is full again. ``Retry-After`` on a 429 is the
(shorter) time until a request fits again.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spine.domain.auth import Principal, Role
from spine.domain.ratelimit import BucketRequest, Decision, RatePolicy
from spine.errors import TooManyRequests
from spine.service.container import Services
from spine.settings import Settings

#: Where a request's RateLimit headers wait for the response: a key of ``scope["state"]``,
#: which is ``request.state``. FastAPI does not merge a dependency's response headers into
#: a ``Response`` a route returns, so ``RateLimitHeaders`` adds them on the way out.
STATE_KEY = "spine_rate_limit_headers"

HEADER_NAMES = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy")


@functools.lru_cache(maxsize=8)
def role_policies(
    reader: str, writer: str, admin: str, tenant_factor: float
) -> dict[Role, tuple[RatePolicy, RatePolicy]]:
    """(subject, tenant) policy of each role. Cached on the setting values: parsed once,
    yet a test that changes a setting gets the new policies."""
    texts = {Role.READER: reader, Role.WRITER: writer, Role.ADMIN: admin}
    policies = {role: RatePolicy.parse(text) for role, text in texts.items()}
    return {role: (p, p.scaled(tenant_factor)) for role, p in policies.items()}


def policies_for(settings: Settings) -> dict[Role, tuple[RatePolicy, RatePolicy]]:
    return role_policies(
        settings.rate_limit_reader,
        settings.rate_limit_writer,
        settings.rate_limit_admin,
        settings.rate_limit_tenant_factor,
    )


def _digest(*parts: str) -> str:
    # Keys are hashed so that a long ``sub`` claim costs the store no more than a short
    # one, and NUL-joined so that ("a", "b:c") and ("a:b", "c") never share a bucket.
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).hexdigest()


def bucket_requests(principal: Principal, settings: Settings) -> tuple[BucketRequest, ...]:
    """The subject's bucket, and its tenant's bucket for the subject's role.

    The tenant bucket is per role so that one bucket always has one policy: the
    tenant's readers share ``factor`` times a reader's bucket, its writers ``factor``
    times a writer's.
    """
    subject_policy, tenant_policy = policies_for(settings)[principal.role]
    return (
        BucketRequest(
            key="rl:s:" + _digest(principal.tenant_id, principal.subject),
            policy=subject_policy,
            name="subject",
        ),
        BucketRequest(
            key="rl:t:" + _digest(principal.tenant_id, principal.role.value),
            policy=tenant_policy,
            name="tenant",
        ),
    )


def rate_limit_headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    limiting = decision.limiting
    policy = ", ".join(
        f'{b.policy.burst};w={b.policy.window_seconds};comment="{b.name}"' for b in decision.buckets
    )
    values = (
        str(limiting.policy.burst),
        str(limiting.remaining),
        str(max(0, math.ceil(limiting.reset_after - 1e-9))),
        policy,
    )
    return [
        (name.encode(), value.encode()) for name, value in zip(HEADER_NAMES, values, strict=True)
    ]


def enforce(request: Request, principal: Principal) -> None:
    """Charge the request to the caller's buckets; 429 when either is empty.

    Called once authentication has named the caller. A request is charged once even if
    a route depends on the principal twice.
    """
    state: dict[str, Any] = request.scope.setdefault("state", {})
    if STATE_KEY in state:
        return
    services: Services = request.app.state.services
    buckets = bucket_requests(principal, services.settings)
    decision = services.rate_limiter.acquire(buckets, services.clock().timestamp())
    state[STATE_KEY] = rate_limit_headers(decision)
    if not decision.allowed:
        limiting = decision.limiting
        raise TooManyRequests(
            f"rate limit of the {limiting.name} exceeded "
            f"({limiting.policy.burst} requests, refilled at {limiting.policy.rate:g}/s)",
            retry_after=max(1, decision.retry_after_seconds),
        )


class RateLimitHeaders:
    """Adds the RateLimit headers a request was charged with to its response, whatever
    produced the response: a route's model, a returned ``Response``, or an error handler."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The server gives each request its own copy of "state"; setdefault keeps that
        # dict, so what the route stores in request.state is what is read here.
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] | None = state.get(STATE_KEY)
                if headers:
                    mutable = MutableHeaders(scope=message)
                    for name, value in headers:
                        mutable[name.decode()] = value.decode()
            await send(message)

        await self.app(scope, receive, send_with_headers)
