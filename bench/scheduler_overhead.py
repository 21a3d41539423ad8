"""Durable nodes per second of the daemon with an instant evaluator (target: >= 500/s on 2 cores).

Two figures from one run on one machine:
  * floor  - the archive alone: `add_nodes` + `finish_node` for one node at a time, in a loop, on
             the same SQLite settings (WAL, synchronous=NORMAL). No scheduling at all.
  * daemon - `aira run` logic end to end: agents, policies, proposers, the evaluation queue
             (inline instant slots), the writer thread, the heartbeat; every node committed
             with its evaluation and policy statistics.
Usage: python bench/scheduler_overhead.py [--nodes 3000] [--agents 8] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from aira_async.config import load_population
from aira_async.daemon import Daemon
from populations.records import (
    Action,
    EvalKey,
    EvalOutcome,
    EvalStatus,
    NodeStatus,
    Operator,
    Proposal,
    Split,
)
from store import Archive, NewNode

POPULATION = """\
[run]
name = "bench"
seed = 0
budget = "1h"
max_nodes = {nodes}
heartbeat_s = 1.0

[task]
name = "synthetic"
fidelity = "exact"
length = 16
test_eval = false

[evaluation]
backend = "inline"
workers = 4

[[agents]]
name = "evo-greedy"
proposer = "evolution"
policy = "greedy"
count = {half}

[[agents]]
name = "evo-mcts"
proposer = "evolution"
policy = "mcts"
count = {half}
"""


def floor_rate(n_nodes: int, workdir: Path) -> float:
    archive = Archive.create(str(workdir / "floor.db"))
    run = archive.create_run(
        name="floor", config={}, config_hash="x", seed=0, budget_s=3600.0, max_nodes=None
    )
    agent = archive.add_agent(
        run.run_id, name="a", island=None, kind="k", policy="greedy", config={}
    )
    start = time.perf_counter()
    for i in range(n_nodes):
        text = f"mA M {i}"
        item = NewNode(
            proposal=Proposal(action=Action(operator=Operator.DRAFT, parent_id=None), text=text),
            proposal_key=text,
            status=NodeStatus.PENDING,
            error=None,
            evaluator_version="",
            config_hash="x",
            seed=0,
        )
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, i + 1, [item])
        key = EvalKey(proposal_key=text, task="t", fidelity="f", seed=0, split=Split.VALIDATION)
        outcome = EvalOutcome(key=key, status=EvalStatus.OK, score=0.5)
        archive.finish_node(
            node.node_id,
            status=NodeStatus.COMPLETE,
            outcome=outcome,
            val_fitness=0.5,
            error=None,
            stats=None,
            agent_id=agent.agent_id,
        )
    elapsed = time.perf_counter() - start
    archive.close()
    return n_nodes / elapsed


def daemon_rate(n_nodes: int, n_agents: int, workdir: Path) -> tuple[float, int]:
    path = workdir / "population.toml"
    path.write_text(POPULATION.format(nodes=n_nodes, half=max(1, n_agents // 2)))
    config = load_population(path)
    daemon = Daemon(config, str(workdir / "daemon.db"), install_signals=False)
    start = time.perf_counter()
    summary = asyncio.run(daemon.run())
    elapsed = time.perf_counter() - start
    return summary.n_finished / elapsed, summary.n_finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3000)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        floor = floor_rate(args.nodes, workdir)
        rate, finished = daemon_rate(args.nodes, args.agents, workdir)
    result = {
        "bench": "scheduler_overhead",
        "machine": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "card": None,
        "nodes": finished,
        "agents": args.agents,
        "archive_floor_nodes_per_s": round(floor, 1),
        "daemon_durable_nodes_per_s": round(rate, 1),
        "daemon_vs_floor": round(rate / floor, 3),
        "target_nodes_per_s": 500,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(f"archive floor : {floor:8.1f} nodes/s (add + finish, one node at a time)")
    print(f"daemon        : {rate:8.1f} durable nodes/s ({finished} nodes, {args.agents} agents)")
    print(
        f"daemon/floor  : {rate / floor:8.3f}   target >= 500 nodes/s: "
        f"{'met' if rate >= 500 else 'NOT met'}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"scheduler_overhead-{os.cpu_count()}cpu.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {target}")


if __name__ == "__main__":
    main()
