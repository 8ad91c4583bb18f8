"""Who is calling, and what their role and scopes let them do."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from spine.errors import Forbidden


class Role(enum.StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


class Permission(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


class Scope(enum.StrEnum):
    """Grants beyond the role. A role never implies a scope: even an admin sees raw PII
    only with a token that was issued for it, and the service's own health (SLOs, which
    count every tenant's requests) only with ``ops:read``: a tenant's admin is not the
    operator of the service."""

    PII_READ = "pii:read"
    OPS_READ = "ops:read"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.READER: frozenset({Permission.READ}),
    Role.WRITER: frozenset({Permission.READ, Permission.WRITE}),
    Role.ADMIN: frozenset({Permission.READ, Permission.WRITE, Permission.ADMIN}),
}


def parse_scopes(values: Iterable[object]) -> frozenset[Scope]:
    """The scopes Spine defines among ``values``. An identity provider issues many scopes
    for other audiences, so unknown ones are dropped, not refused."""
    known = {scope.value: scope for scope in Scope}
    return frozenset(known[value] for value in values if isinstance(value, str) and value in known)


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    role: Role
    scopes: frozenset[Scope] = field(default_factory=frozenset)

    def require(self, permission: Permission) -> None:
        if permission not in GRANTS[self.role]:
            raise Forbidden(f"role {self.role} may not {permission}")

    def require_scope(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"the token lacks the {scope} scope")
