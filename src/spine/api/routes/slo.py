"""/v1/admin/slo: the service's SLOs, error budgets and burn rates, for its operators.

The counts behind them are every tenant's requests and uploads, so a tenant's admin may
not read them: the route wants an admin token with the ``ops:read`` scope too.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from spine.api.deps import Operator, ServicesDep
from spine.api.openapi import problem_responses
from spine.service import slo
from spine.service.slo import SloReport

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses())


class SloPublic(BaseModel):
    name: str = Field(description="availability, search_latency or freshness.")
    objective: float = Field(description="Target share of good events, e.g. 0.999.")
    description: str = Field(description="What makes an event good.")
    threshold_seconds: float | None = Field(
        description="The latency or freshness threshold; null for availability."
    )
    good: int = Field(description="Good events in the window.")
    total: int = Field(description="All events in the window.")
    sli: float = Field(description="good / total; 1.0 without events.")
    budget_allowed: float = Field(description="Bad events the objective allows in the window.")
    budget_bad: int = Field(description="Bad events in the window.")
    budget_remaining: float = Field(
        description="1 - bad / allowed: 1 untouched, 0 spent, negative overspent."
    )
    burn_rates: dict[str, float] = Field(
        description="Window (5m, 1h, 6h) -> error ratio / (1 - objective); 1 spends the "
        "budget exactly over the window."
    )
    history: list[float | None] = Field(
        description="Error ratio of each of the last 24 hours, oldest first; null: no events."
    )
    overdue_jobs: int = Field(
        description="Freshness: unfinished jobs already past the threshold, counted as bad."
    )


class SloReportPublic(BaseModel):
    generated_at: datetime
    window_days: int = Field(description="The error budget window.")
    slos: list[SloPublic]

    @classmethod
    def of(cls, report: SloReport) -> SloReportPublic:
        return cls.model_validate(report, from_attributes=True)


@router.get("/slo", response_model=SloReportPublic)
def get_slo_report(principal: Operator, services: ServicesDep) -> SloReportPublic:
    """Each SLO's SLI and error budget over the window, its burn rates over 5 minutes,
    1 hour and 6 hours, and its error ratio hour by hour, counted across every process
    and tenant."""
    return SloReportPublic.of(slo.report(services))
