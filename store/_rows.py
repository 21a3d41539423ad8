"""Table handles and row → record conversion, shared by the archive's methods.

Private to `store`. Nothing here touches the database; conversions return frozen records.

Float fields go through `float()`: SQLite's RETURNING hands back a REAL value that holds a whole
number as an `int`, and a record must not depend on which statement read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam

from populations.records import (
    ROOT_ID,
    EvalKey,
    EvalOutcome,
    EvalStatus,
    NodeRecord,
    NodeStatus,
    Operator,
    Split,
)
from store.models import Agent, Evaluation, Event, Island, Node, Run, table_of
from store.records import (
    AgentRecord,
    EventRecord,
    IslandRecord,
    NewNode,
    RunRecord,
    RunStatus,
)

RUNS = table_of(Run)
ISLANDS = table_of(Island)
AGENTS = table_of(Agent)
NODES = table_of(Node)
EVALS = table_of(Evaluation)
EVENTS = table_of(Event)

FINISHED = (NodeStatus.COMPLETE.value, NodeStatus.FAILED.value)
UNFINISHED = (NodeStatus.PENDING.value, NodeStatus.RUNNING.value)

NODE_COLUMNS = (
    NODES.c.id,
    NODES.c.run_id,
    NODES.c.agent_id,
    NODES.c.parent_id,
    NODES.c.step,
    NODES.c.operator,
    NODES.c.proposal,
    NODES.c.proposal_key,
    NODES.c.plan,
    NODES.c.status,
    NODES.c.val_fitness,
    NODES.c.test_fitness,
    NODES.c.error,
    NODES.c.created_at,
    NODES.c.finished_at,
    NODES.c.tokens_in,
    NODES.c.tokens_out,
    NODES.c.cost_usd,
    NODES.c.gpu_s,
)
"""The columns `node_record` reads, in its order."""


def node_record(row: Sequence[Any]) -> NodeRecord:
    (node_id, run_id, agent_id, parent_id, step, operator, proposal, proposal_key, plan, status,
     val_fitness, test_fitness, error, created_at, finished_at, tokens_in, tokens_out, cost_usd,
     gpu_s) = row  # fmt: skip
    return NodeRecord(
        node_id=node_id,
        run_id=run_id,
        agent_id=agent_id,
        parent_id=parent_id,
        step=step,
        operator=Operator(operator),
        proposal=proposal,
        proposal_key=proposal_key,
        plan=plan,
        status=NodeStatus(status),
        val_fitness=None if val_fitness is None else float(val_fitness),
        test_fitness=None if test_fitness is None else float(test_fitness),
        error=error,
        created_at=float(created_at),
        finished_at=None if finished_at is None else float(finished_at),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost_usd=float(cost_usd),
        gpu_s=float(gpu_s),
    )


def run_record(row: Row[Any]) -> RunRecord:
    m = row._mapping
    return RunRecord(
        run_id=m["id"],
        name=m["name"],
        created_at=float(m["created_at"]),
        config=m["config"],
        config_hash=m["config_hash"],
        seed=m["seed"],
        budget_s=float(m["budget_s"]),
        spent_s=float(m["spent_s"]),
        max_nodes=m["max_nodes"],
        status=RunStatus(m["status"]),
        heartbeat_at=None if m["heartbeat_at"] is None else float(m["heartbeat_at"]),
        pid=m["pid"],
    )


AGENT_COLUMNS = (*AGENTS.c, ISLANDS.c.name.label("island"))
AGENTS_WITH_ISLAND = AGENTS.outerjoin(ISLANDS, AGENTS.c.island_id == ISLANDS.c.id)


def agent_record(row: Row[Any]) -> AgentRecord:
    m = row._mapping
    return AgentRecord(
        agent_id=m["id"],
        run_id=m["run_id"],
        name=m["name"],
        island_id=m["island_id"],
        island=m["island"],
        kind=m["kind"],
        policy=m["policy"],
        config=m["config"],
    )


def island_record(row: Row[Any]) -> IslandRecord:
    m = row._mapping
    return IslandRecord(island_id=m["id"], run_id=m["run_id"], name=m["name"])


def event_record(row: Row[Any]) -> EventRecord:
    m = row._mapping
    return EventRecord(
        event_id=m["id"],
        run_id=m["run_id"],
        at=float(m["at"]),
        kind=m["kind"],
        agent_id=m["agent_id"],
        node_id=m["node_id"],
        payload=m["payload"],
    )


def eval_outcome(row: Row[Any]) -> EvalOutcome:
    m = row._mapping
    key = EvalKey(
        proposal_key=m["proposal_key"],
        task=m["task"],
        fidelity=m["fidelity"],
        seed=m["seed"],
        split=Split(m["split"]),
    )
    return EvalOutcome(
        key=key,
        status=EvalStatus(m["status"]),
        score=None if m["score"] is None else float(m["score"]),
        metrics=m["metrics"],
        error=m["error"],
        device=m["device"],
        duration_s=float(m["duration_s"]),
        peak_mem_mb=float(m["peak_mem_mb"]),
        evaluator_version=m["evaluator_version"],
    )


def key_params(key: EvalKey) -> dict[str, Any]:
    return {
        "k_proposal_key": key.proposal_key,
        "k_task": key.task,
        "k_fidelity": key.fidelity,
        "k_seed": key.seed,
        "k_split": key.split.value,
    }


KEY_MATCHES = (
    EVALS.c.proposal_key == bindparam("k_proposal_key"),
    EVALS.c.task == bindparam("k_task"),
    EVALS.c.fidelity == bindparam("k_fidelity"),
    EVALS.c.seed == bindparam("k_seed"),
    EVALS.c.split == bindparam("k_split"),
)


def new_node_params(
    run_id: int, agent_id: int, step: int, slot: int, item: NewNode, now: float
) -> dict[str, Any]:
    proposal = item.proposal
    parent_id = proposal.action.parent_id
    failed = item.status is NodeStatus.FAILED
    return {
        "run_id": run_id,
        "agent_id": agent_id,
        "parent_id": None if parent_id == ROOT_ID else parent_id,
        "step": step,
        "slot": slot,
        "operator": proposal.action.operator.value,
        "proposal": proposal.text,
        "proposal_key": item.proposal_key,
        "plan": proposal.plan,
        "status": item.status.value,
        "error": (item.error or proposal.error) if failed else item.error,
        "created_at": now,
        "finished_at": now if failed else None,
        "tokens_in": proposal.tokens_in,
        "tokens_out": proposal.tokens_out,
        "cost_usd": proposal.cost_usd,
        "gpu_s": 0.0,
        "evaluator_version": item.evaluator_version,
        "config_hash": item.config_hash,
        "seed": item.seed,
    }
