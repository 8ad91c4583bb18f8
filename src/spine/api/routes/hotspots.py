"""/v1/admin/hotspots: the tenants with the largest shares of requests and queued jobs.

It names tenants, so a tenant's admin may not read it: the route wants an admin token
with the ``ops:read`` scope too. The numbers are this process's (see
:mod:`spine.service.hotspots`).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from spine.api.deps import Operator, ServicesDep
from spine.api.openapi import problem_responses
from spine.service.hotspots import HotspotReport, TenantShare

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses())


class OtherSharePublic(BaseModel):
    count: int = Field(description="Events of every tenant outside the top k.")
    error: int = Field(description="The true count is within count ± error.")
    share: float = Field(description="count / total.")


class TenantSharePublic(OtherSharePublic):
    tenant: str
    count: int = Field(description="Estimated events of the tenant.")
    hot: bool = Field(description="Whether the share exceeds the threshold.")


class HotspotDimensionPublic(BaseModel):
    dimension: str = Field(description="requests or jobs.")
    window_seconds: float = Field(
        description="The radar's window: the counts cover the current and the previous one."
    )
    since: datetime = Field(description="Start of the previous window.")
    total: int = Field(description="Events of every tenant since then.")
    threshold: float = Field(description="The share above which a tenant is hot.")
    top: list[TenantSharePublic] = Field(description="Up to k tenants, largest share first.")
    other: OtherSharePublic

    @classmethod
    def of(cls, report: HotspotReport) -> HotspotDimensionPublic:
        def public(share: TenantShare) -> TenantSharePublic:
            return TenantSharePublic(
                tenant=share.tenant,
                count=share.count,
                error=share.error,
                share=share.share,
                hot=report.is_hot(share),
            )

        return cls(
            dimension=report.dimension,
            window_seconds=report.window_seconds,
            since=report.since,
            total=report.total,
            threshold=report.threshold,
            top=[public(share) for share in report.top],
            other=OtherSharePublic(
                count=report.other.count, error=report.other.error, share=report.other.share
            ),
        )


class HotspotsPublic(BaseModel):
    requests: HotspotDimensionPublic = Field(description="HTTP requests by the tenants' callers.")
    jobs: HotspotDimensionPublic = Field(description="Jobs the tenants queued (uploads, retries).")


@router.get("/hotspots", response_model=HotspotsPublic)
def get_hotspots(principal: Operator, services: ServicesDep) -> HotspotsPublic:
    """The heaviest tenants by requests and by queued jobs over the last one or two
    windows, each with its share, the error bound of its count and whether it is hot."""
    radar = services.radar
    return HotspotsPublic(
        requests=HotspotDimensionPublic.of(radar.report("requests")),
        jobs=HotspotDimensionPublic.of(radar.report("jobs")),
    )
