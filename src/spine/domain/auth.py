"""Who is calling, and what their role lets them do."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from spine.errors import Forbidden


class Role(enum.StrEnum):
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"


class Permission(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.READER: frozenset({Permission.READ}),
    Role.WRITER: frozenset({Permission.READ, Permission.WRITE}),
    Role.ADMIN: frozenset({Permission.READ, Permission.WRITE, Permission.ADMIN}),
}


@dataclass(frozen=True)
class Principal:
    subject: str
    tenant_id: str
    role: Role

    def require(self, permission: Permission) -> None:
        if permission not in GRANTS[self.role]:
            raise Forbidden(f"role {self.role} may not {permission}")
