"""Writer-thread cost of one node: ``add_nodes`` + ``mark_running`` + ``finish_node``.

Not a test (pytest collects only ``test_*.py``); run it by hand to check the daemon's
≥500 durable nodes/s target on SQLite (file, WAL, synchronous=NORMAL):

    .venv/bin/python tests/store/bench_writer.py [N_NODES] [BATCH]
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


def main(n_nodes: int = 5000, batch: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = Archive.create(Path(tmp) / "bench.db")
        run = archive.create_run("bench", {"k": 1}, "h", 0, 3600.0, None)
        agent = archive.add_agent(run.run_id, "a0", "i0", "random", "mcts", {})
        parent: int | None = None
        start = time.perf_counter()
        for step in range(n_nodes // batch):
            items = [
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
                for i in range(batch)
            ]
            nodes = archive.add_nodes(run.run_id, agent.agent_id, step, items)
            archive.mark_running([n.node_id for n in nodes])
            for node in nodes:
                key = EvalKey(
                    proposal_key=node.proposal_key,
                    task="mad",
                    fidelity="smoke",
                    seed=0,
                    split=Split.VALIDATION,
                )
                outcome = EvalOutcome(
                    key=key, status=EvalStatus.OK, score=0.5, metrics={"acc": 0.5}, duration_s=0.01
                )
                # A path of four statistics rows: root, grandparent, parent, node.
                stats = {k: NodeStats(visits=step + 1, value_sum=0.5 * step) for k in (0, 1, 2)}
                stats[node.node_id] = NodeStats(visits=1, value_sum=0.5)
                archive.finish_node(
                    node.node_id,
                    status=NodeStatus.COMPLETE,
                    outcome=outcome,
                    val_fitness=0.5,
                    error=None,
                    stats=stats,
                )
            parent = nodes[-1].node_id
        elapsed = time.perf_counter() - start
        done = (n_nodes // batch) * batch
        print(
            f"{done} nodes, batch {batch}: {elapsed:.2f} s, {1e3 * elapsed / done:.3f} ms/node, "
            f"{done / elapsed:.0f} nodes/s"
        )
        archive.close()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
