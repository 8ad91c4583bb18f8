"""Observability: each job keeps the request id and trace context of the request that
queued it; per-minute SLO counts; the queue's round-robin cursor over tenants.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from spine.adapters.sql.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: nullable columns, so code of the previous release still writes jobs.
    op.add_column("jobs", sa.Column("request_id", sa.String(128)))
    op.add_column("jobs", sa.Column("traceparent", sa.String(64)))
    # A tenant's next runnable job, for round-robin claiming.
    op.create_index(
        "ix_jobs_tenant_state_next_run_at", "jobs", ["tenant_id", "state", "next_run_at"]
    )
    op.create_table(
        "slo_minutes",
        sa.Column("slo", sa.String(32), primary_key=True),
        sa.Column("minute", UtcDateTime, primary_key=True),
        sa.Column("good", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "queue_tenants",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("last_claimed_at", UtcDateTime),
    )
    # Tenants that already have queued work join the rotation.
    # (last_claimed_at is left out rather than given as NULL: PostgreSQL types a bare
    # NULL in a SELECT list as text, which a timestamptz column refuses.)
    op.execute("INSERT INTO queue_tenants (tenant_id) SELECT DISTINCT tenant_id FROM jobs")


def downgrade() -> None:
    op.drop_table("queue_tenants")
    op.drop_table("slo_minutes")
    op.drop_index("ix_jobs_tenant_state_next_run_at", table_name="jobs")
    # SQLite (3.35+) drops a column in place; a batch copy of the table would rewrite
    # its stored definition and a later upgrade would not give the same schema back.
    op.drop_column("jobs", "traceparent")
    op.drop_column("jobs", "request_id")
