"""The daemon on the MAD proxy with fused evaluation: queued requests train together in one worker.

Kept as small as a MAD run gets (smoke fidelity, 2-layer arrangements, one CPU worker) so that it
takes seconds on two cores: one CPU worker runs a fused batch of k jobs in about k times one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aira_async.config import load_population
from aira_async.daemon import Daemon
from populations.records import EvalKey, Split
from store import Archive

POPULATION = """\
[run]
name = "fused"
seed = 0
budget = "5m"
max_nodes = 6
shutdown_grace_s = 10
heartbeat_s = 0.2

[task]
name = "mad"
fidelity = "smoke"
seed = 0
length = 2
alphabet = ["mA", "M", "Mb"]
test_eval = false

[evaluation]
backend = "process"
device = "cpu"
workers = 1
threads_per_worker = 1
timeout_s = 120
fuse = 4

[[agents]]
name = "random"
proposer = "random"
policy = "greedy"
[agents.policy_params]
num_drafts = 3

[[agents]]
name = "evolution"
proposer = "evolution"
policy = "greedy"
[agents.policy_params]
num_drafts = 3
"""


def test_queued_mad_requests_train_together(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(POPULATION)
    db = tmp_path / "run.db"
    summary = asyncio.run(Daemon(load_population(path), str(db), install_signals=False).run())
    assert summary.best is not None
    archive = Archive.open(str(db), read_only=True)
    try:
        nodes = archive.nodes(archive.get_run().run_id)
        good = [n for n in nodes if n.is_good]
        outcomes = {
            n.proposal_key: archive.find_evaluation(
                EvalKey(
                    proposal_key=n.proposal_key,
                    task="mad",
                    fidelity="smoke",
                    seed=0,
                    split=Split.VALIDATION,
                )
            )
            for n in good
        }
    finally:
        archive.close()
    assert len(nodes) == 6 and all(n.is_good for n in nodes), [n.error for n in nodes]
    fused_k = [o.metrics.get("fused_k", 1) for o in outcomes.values() if o is not None]
    assert len(fused_k) == len(outcomes) and max(fused_k) > 1, fused_k
    assert all(k <= 4 for k in fused_k)
    # a proposal evaluated for several nodes costs GPU time once
    assert sum(n.gpu_s > 0 for n in good) == len(outcomes)
