"""Request dependencies: the services, and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from spine.domain.auth import Permission, Principal
from spine.errors import Unauthenticated
from spine.service.container import Services
from spine.service.tokens import verify_token

_bearer = HTTPBearer(auto_error=False, description="A JWT made by `spine token create`.")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_principal(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer token")
    return verify_token(
        request.app.state.jwt_secret,
        credentials.credentials,
        issuer=services.settings.jwt_issuer,
    )


def _requiring(permission: Permission) -> object:
    def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(permission)
        return principal

    return Depends(dependency)


Reader = Annotated[Principal, _requiring(Permission.READ)]
Writer = Annotated[Principal, _requiring(Permission.WRITE)]
