"""Writer-thread cost of one node: ``add_nodes`` + ``mark_running`` + ``finish_node``.

Each node is stored as the daemon stores it with an instant evaluator: its step is added, it is
marked running, and it is finished with a new evaluation and four MCTS statistics rows, each call
its own transaction. Writer CPU is the thread's CPU time (`time.thread_time`), which is what the
writer takes from the event loop's share of the cores; wall time includes waiting on the disk.

Not a test (pytest collects only ``test_*.py``); run it by hand to check the daemon's
≥500 durable nodes/s target on SQLite (file, WAL, synchronous=NORMAL):

    .venv/bin/python tests/store/bench_writer.py [N_NODES] [NODES_PER_STEP]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from populations.records import (
    Action,
    EvalKey,
    EvalOutcome,
    EvalStatus,
    NodeStats,
    NodeStatus,
    Operator,
    Proposal,
    Split,
)
from store import Archive, NewNode


def _step_items(step: int, per_step: int, parent: int | None) -> list[NewNode]:
    return [
        NewNode(
            proposal=Proposal(
                action=Action(operator=Operator.IMPROVE, parent_id=parent),
                text=f"mA M {step} {i}",
                plan="plan text " * 20,
                tokens_in=100,
                tokens_out=50,
            ),
            proposal_key=f"mA M {step} {i}",
            evaluator_version="v1",
        )
        for i in range(per_step)
    ]


def _outcome(proposal_key: str) -> EvalOutcome:
    key = EvalKey(
        proposal_key=proposal_key, task="mad", fidelity="smoke", seed=0, split=Split.VALIDATION
    )
    return EvalOutcome(
        key=key, status=EvalStatus.OK, score=0.5, metrics={"acc": 0.5}, duration_s=0.01
    )


def main(n_nodes: int = 5000, per_step: int = 1) -> None:
    cpu = {"add_nodes": 0.0, "mark_running": 0.0, "finish_node": 0.0}
    clock = time.thread_time
    with tempfile.TemporaryDirectory() as tmp:
        archive = Archive.create(Path(tmp) / "bench.db")
        run = archive.create_run("bench", {"k": 1}, "h", 0, 3600.0, None)
        agent = archive.add_agent(run.run_id, "a0", "i0", "random", "mcts", {})
        parent: int | None = None
        n_steps = n_nodes // per_step
        start = time.perf_counter()
        for step in range(n_steps):
            items = _step_items(step, per_step, parent)
            t0 = clock()
            nodes = archive.add_nodes(run.run_id, agent.agent_id, step, items)
            t1 = clock()
            archive.mark_running([n.node_id for n in nodes])
            t2 = clock()
            cpu["add_nodes"] += t1 - t0
            cpu["mark_running"] += t2 - t1
            for node in nodes:
                outcome = _outcome(node.proposal_key)
                # A path of four statistics rows: root, grandparent, parent, node.
                stats = {k: NodeStats(visits=step + 1, value_sum=0.5 * step) for k in (0, 1, 2)}
                stats[node.node_id] = NodeStats(visits=1, value_sum=0.5)
                t3 = clock()
                archive.finish_node(
                    node.node_id,
                    status=NodeStatus.COMPLETE,
                    outcome=outcome,
                    val_fitness=0.5,
                    error=None,
                    stats=stats,
                )
                cpu["finish_node"] += clock() - t3
            parent = nodes[-1].node_id
        elapsed = time.perf_counter() - start
        archive.close()
    done = n_steps * per_step
    per_call = ", ".join(f"{name} {1e6 * s / done:.0f}" for name, s in cpu.items())
    print(
        f"{done} nodes, {per_step} per step: writer CPU {1e6 * sum(cpu.values()) / done:.0f} "
        f"us/node ({per_call}); wall {1e6 * elapsed / done:.0f} us/node = "
        f"{done / elapsed:.0f} nodes/s"
    )


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
