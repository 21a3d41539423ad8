"""Initial schema: runs, islands, agents, evaluations, nodes, policy statistics, events.

Revision ID: 0001_initial
Revises: (none)

Written out table by table rather than from the models, so that this revision stays what it was
when it was released even as `store/models.py` moves on. The sample database
`tests/assets/store/schema_0001_initial.db` was made at this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("budget_s", sa.Double(), nullable=False),
        sa.Column("spent_s", sa.Double(), nullable=False),
        sa.Column("max_nodes", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint(
            "status IN ('running', 'stopped', 'finished', 'crashed')", name="ck_runs_status"
        ),
    )
    op.create_table(
        "islands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_islands"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_islands_run_id_runs"),
        sa.UniqueConstraint("run_id", "name", name="uq_islands_run_id_name"),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("island_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("policy", sa.String(50), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_agents_run_id_runs"),
        sa.ForeignKeyConstraint(["island_id"], ["islands.id"], name="fk_agents_island_id_islands"),
        sa.UniqueConstraint("run_id", "name", name="uq_agents_run_id_name"),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_key", sa.String(512), nullable=False),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("fidelity", sa.String(50), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("device", sa.String(100), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("peak_mem_mb", sa.Double(), nullable=False),
        sa.Column("evaluator_version", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.UniqueConstraint(
            "proposal_key",
            "task",
            "fidelity",
            "seed",
            "split",
            name="uq_evaluations_proposal_key_task_fidelity_seed_split",
        ),
        sa.CheckConstraint("split IN ('validation', 'test')", name="ck_evaluations_split"),
        sa.CheckConstraint(
            "status IN ('ok', 'diverged', 'oom', 'timeout', 'error')",
            name="ck_evaluations_status",
        ),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("operator", sa.String(16), nullable=False),
        sa.Column("proposal", sa.Text(), nullable=False),
        sa.Column("proposal_key", sa.String(512), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("val_fitness", sa.Double(), nullable=True),
        sa.Column("test_fitness", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("heartbeat_at", sa.Double(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("gpu_s", sa.Double(), nullable=False),
        sa.Column("val_eval_id", sa.Integer(), nullable=True),
        sa.Column("test_eval_id", sa.Integer(), nullable=True),
        sa.Column("evaluator_version", sa.String(100), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_nodes"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_nodes_run_id_runs"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_nodes_agent_id_agents"),
        sa.ForeignKeyConstraint(["parent_id"], ["nodes.id"], name="fk_nodes_parent_id_nodes"),
        sa.ForeignKeyConstraint(
            ["val_eval_id"], ["evaluations.id"], name="fk_nodes_val_eval_id_evaluations"
        ),
        sa.ForeignKeyConstraint(
            ["test_eval_id"], ["evaluations.id"], name="fk_nodes_test_eval_id_evaluations"
        ),
        sa.UniqueConstraint("agent_id", "step", "slot", name="uq_nodes_agent_id_step_slot"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'complete', 'failed')", name="ck_nodes_status"
        ),
    )
    op.create_index("ix_nodes_run_id_agent_id_step", "nodes", ["run_id", "agent_id", "step"])
    op.create_index("ix_nodes_run_id_status", "nodes", ["run_id", "status"])
    op.create_index("ix_nodes_proposal_key", "nodes", ["proposal_key"])
    op.create_table(
        "policy_stats",
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("node_key", sa.Integer(), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.Column("value_sum", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "node_key", name="pk_policy_stats"),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name="fk_policy_stats_agent_id_agents"
        ),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_events_run_id_runs"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name="fk_events_agent_id_agents"),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name="fk_events_node_id_nodes"),
    )
    op.create_index("ix_events_run_id_kind", "events", ["run_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_events_run_id_kind", table_name="events")
    op.drop_table("events")
    op.drop_table("policy_stats")
    op.drop_index("ix_nodes_proposal_key", table_name="nodes")
    op.drop_index("ix_nodes_run_id_status", table_name="nodes")
    op.drop_index("ix_nodes_run_id_agent_id_step", table_name="nodes")
    op.drop_table("nodes")
    op.drop_table("evaluations")
    op.drop_table("agents")
    op.drop_table("islands")
    op.drop_table("runs")
