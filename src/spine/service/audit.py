"""The audit trail: who did what to which resource, with what outcome."""

from __future__ import annotations

from spine.service.container import Services


def record(
    services: Services,
    *,
    tenant_id: str,
    actor: str,
    action: str,
    resource: str,
    request_id: str,
    outcome: str,
) -> None:
    """Append one entry to the tenant's chain (placeholder until the audit log lands)."""
    raise NotImplementedError
