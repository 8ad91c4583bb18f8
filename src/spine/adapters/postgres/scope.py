"""Row-level security's half on the client: whose rows this transaction may touch.

Every tenant table has a policy (migration 0005) that admits a row only when its
``tenant_id`` equals the transaction's ``app.tenant_id`` setting, or when the transaction
says ``app.all_tenants = on``. The repositories filter on the tenant in every statement
already; the policies are a second wall under them, so a statement that forgets its
filter still sees one tenant's rows, never another's.

The unit of work sets the scope, not each repository: :func:`scoped` wraps a tenant
repository so that each call runs under the tenant it names (every tenant method takes
the tenant as its first argument, see :mod:`spine.ports`), and the tenant-blind ports
(the workers' dispatch, housekeeping) run under ``all_tenants``. A method that reached
the connection without going through the wrapper would see no row at all: the scope
fails closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, text

T = TypeVar("T")
_ALL = object()
#: set_config(..., true): the value lasts until the end of the transaction, so a pooled
#: connection never carries one tenant's scope into another request.
_SET_SCOPE = text(
    "SELECT set_config('app.tenant_id', :tenant, true), "
    "set_config('app.all_tenants', :all_tenants, true)"
)


class TenantScope:
    """The scope of one transaction; each change costs one statement, repeats nothing."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._current: object = None

    def tenant(self, tenant_id: str) -> None:
        if self._current != tenant_id:
            self._conn.execute(_SET_SCOPE, {"tenant": tenant_id, "all_tenants": "off"})
            self._current = tenant_id

    def all_tenants(self) -> None:
        if self._current is not _ALL:
            self._conn.execute(_SET_SCOPE, {"tenant": "", "all_tenants": "on"})
            self._current = _ALL


class _Scoped:
    """Calls ``enter(args, kwargs)`` before each call of the wrapped repository's methods."""

    def __init__(
        self, repository: object, enter: Callable[[tuple[Any, ...], dict[str, Any]], None]
    ) -> None:
        self._repository = repository
        self._enter = enter

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._repository, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            self._enter(args, kwargs)
            return method(*args, **kwargs)

        return call


def tenant_scoped(repository: T, scope: TenantScope) -> T:
    """``repository`` whose every call first scopes the transaction to its tenant."""

    def enter(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        scope.tenant(args[0] if args else kwargs["tenant_id"])

    return cast(T, _Scoped(repository, enter))


def all_tenants(repository: T, scope: TenantScope) -> T:
    """``repository`` (a tenant-blind port) whose every call lifts the tenant wall."""
    return cast(T, _Scoped(repository, lambda _args, _kwargs: scope.all_tenants()))
