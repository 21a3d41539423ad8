"""LLM call log (paid replies stored before use) and island migrations (references to nodes).

Revision ID: 0002_llm_calls_migrations
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_llm_calls_migrations"
down_revision: str | None = "0001_initial"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("operator", sa.String(16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("latency_s", sa.Double(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_calls"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_llm_calls_run_id_runs"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_llm_calls_agent_id_agents"),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name="fk_llm_calls_node_id_nodes"),
        sa.UniqueConstraint("run_id", "request_key", name="uq_llm_calls_run_id_request_key"),
        sa.CheckConstraint("status IN ('ok', 'error')", name="ck_llm_calls_status"),
    )
    op.create_index("ix_llm_calls_run_id_agent_id", "llm_calls", ["run_id", "agent_id"])
    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("source_island_id", sa.Integer(), nullable=False),
        sa.Column("target_island_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_migrations"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_migrations_run_id_runs"),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name="fk_migrations_node_id_nodes"),
        sa.ForeignKeyConstraint(
            ["source_island_id"], ["islands.id"], name="fk_migrations_source_island_id_islands"
        ),
        sa.ForeignKeyConstraint(
            ["target_island_id"], ["islands.id"], name="fk_migrations_target_island_id_islands"
        ),
        sa.UniqueConstraint(
            "node_id", "target_island_id", name="uq_migrations_node_id_target_island_id"
        ),
    )
    op.create_index(
        "ix_migrations_run_id_target_island_id", "migrations", ["run_id", "target_island_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_migrations_run_id_target_island_id", table_name="migrations")
    op.drop_table("migrations")
    op.drop_index("ix_llm_calls_run_id_agent_id", table_name="llm_calls")
    op.drop_table("llm_calls")
