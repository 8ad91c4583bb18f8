"""Request dependencies: the services, and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from spine.api import ratelimit
from spine.api.auditing import remember_principal
from spine.domain.auth import Permission, Principal, Scope
from spine.errors import Unauthenticated
from spine.service.container import Services
from spine.service.tokens import TokenVerifier

_bearer = HTTPBearer(auto_error=False, description="A JWT made by `spine token create`.")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer token")
    verifier: TokenVerifier = request.app.state.verifier
    return verifier.verify(credentials.credentials)


def _requiring(permission: Permission, *scopes: Scope) -> object:
    def dependency(
        request: Request, principal: Annotated[Principal, Depends(get_principal)]
    ) -> Principal:
        # A 403 below is audited under this caller (api.auditing).
        remember_principal(request, principal)
        # Charged before the role check: refused attempts cost the caller too.
        ratelimit.enforce(request, principal)
        principal.require(permission)
        for scope in scopes:
            principal.require_scope(scope)
        return principal

    return Depends(dependency)


Reader = Annotated[Principal, _requiring(Permission.READ)]
Writer = Annotated[Principal, _requiring(Permission.WRITE)]
Admin = Annotated[Principal, _requiring(Permission.ADMIN)]
#: Raw (unredacted) personal data: a reader whose token was issued with ``pii:read``.
PiiReader = Annotated[Principal, _requiring(Permission.READ, Scope.PII_READ)]
#: The service's own state across tenants (SLOs): an admin whose token has ``ops:read``.
Operator = Annotated[Principal, _requiring(Permission.ADMIN, Scope.OPS_READ)]
