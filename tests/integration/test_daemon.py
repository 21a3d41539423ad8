"""The daemon end to end, in-process, on the synthetic task (instant or with latency)."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

from aira_async.config import load_population
from aira_async.daemon import Daemon
from aira_async.errors import RunStateError
from populations.policies import make_policy
from populations.records import ROOT_ID, NodeStats, NodeStatus
from populations.tree import SearchTree
from store import Archive
from tests.conftest import write_population


def run(config_path: Path, db: Path, **kwargs: object) -> object:
    config = load_population(config_path)
    daemon = Daemon(config, str(db), install_signals=False, **kwargs)  # type: ignore[arg-type]
    return asyncio.run(daemon.run())


def trees(db: Path) -> dict[str, tuple[object, ...]]:
    """Each agent's tree with node ids replaced by the agent's own creation order.

    Ids are global to the archive and interleave across agents as timing dictates; the trees
    themselves must not depend on timing.
    """
    archive = Archive.open(str(db), read_only=True)
    try:
        run_ = archive.get_run()
        out = {}
        for agent in archive.agents(run_.run_id):
            nodes = archive.nodes(run_.run_id, agent_id=agent.agent_id)
            order = {n.node_id: i for i, n in enumerate(nodes)}
            out[agent.name] = tuple(
                (
                    order[n.node_id],
                    None if n.parent_id is None else order[n.parent_id],
                    n.step,
                    n.operator.value,
                    n.proposal,
                    n.status.value,
                    n.val_fitness,
                    n.error,
                )
                for n in nodes
            )
        return out
    finally:
        archive.close()


def recomputed_mcts_stats(archive: Archive, agent_id: int) -> dict[int, NodeStats]:
    """Replay every finished node of the agent through the policy, in id order."""
    run_ = archive.get_run()
    nodes = [n for n in archive.nodes(run_.run_id, agent_id=agent_id) if n.status.finished]
    policy = make_policy("mcts")
    tree = SearchTree(nodes)
    stats: dict[int, NodeStats] = {}
    for node in nodes:
        stats.update(policy.on_result(tree, node, stats))
    return stats


def test_run_to_node_cap(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml", max_nodes=40, test_eval=True)
    db = tmp_path / "run.db"
    summary = run(path, db)
    assert summary.stop_reason == "max_nodes"  # type: ignore[attr-defined]
    archive = Archive.open(str(db), read_only=True)
    run_ = archive.get_run()
    nodes = archive.nodes(run_.run_id)
    assert len(nodes) == 40
    assert all(n.status.finished for n in nodes)
    assert {n.status for n in nodes} <= {NodeStatus.COMPLETE, NodeStatus.FAILED}
    good = [n for n in nodes if n.is_good]
    assert good, "the synthetic task fails only ~5% of arrangements"
    assert all(n.test_fitness is not None for n in good)
    # every agent took part, and each good node's fitness is the evaluator's
    assert {n.agent_id for n in nodes} == {a.agent_id for a in archive.agents(run_.run_id)}
    mcts = next(a for a in archive.agents(run_.run_id) if a.policy == "mcts")
    stored = archive.stats(mcts.agent_id)
    assert stored == recomputed_mcts_stats(archive, mcts.agent_id)
    assert stored[ROOT_ID].visits == sum(
        1 for n in archive.nodes(run_.run_id, agent_id=mcts.agent_id) if n.is_good
    )
    archive.close()


def test_same_seed_same_trees(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml", max_steps=6)
    run(path, tmp_path / "a.db")
    run(path, tmp_path / "b.db")
    first, second = trees(tmp_path / "a.db"), trees(tmp_path / "b.db")
    assert first == second
    assert all(len(t) >= 6 for t in first.values())
    other = write_population(tmp_path / "q.toml", max_steps=6, seed=1)
    run(other, tmp_path / "c.db")
    assert trees(tmp_path / "c.db") != first


def test_process_workers_and_reuse(tmp_path: Path) -> None:
    path = write_population(
        tmp_path / "p.toml", max_nodes=24, backend="process", workers=2, latency_s=0.01
    )
    db = tmp_path / "run.db"
    summary = run(path, db)
    archive = Archive.open(str(db), read_only=True)
    nodes = archive.nodes(archive.get_run().run_id)
    assert len(nodes) == 24 and all(n.status.finished for n in nodes)
    keys = [n.proposal_key for n in nodes if n.is_good]
    # a proposal evaluated twice costs GPU time once
    assert sum(n.gpu_s > 0 for n in nodes if n.is_good) == len(set(keys))
    assert summary.best is not None  # type: ignore[attr-defined]
    archive.close()


def test_budget_stops_and_continues(tmp_path: Path) -> None:
    path = write_population(
        tmp_path / "p.toml", budget="1s", backend="process", workers=1, latency_s=0.05
    )
    db = tmp_path / "run.db"
    summary = run(path, db)
    assert summary.stop_reason == "budget"  # type: ignore[attr-defined]
    archive = Archive.open(str(db), read_only=True)
    spent = archive.get_run().spent_s
    archive.close()
    assert spent >= 1.0
    daemon = Daemon(None, str(db), resume=True, budget_s=2.0, install_signals=False)
    again = asyncio.run(daemon.run())
    assert again.stop_reason == "budget"
    archive = Archive.open(str(db), read_only=True)
    run_ = archive.get_run()
    assert run_.spent_s >= 2.0 and run_.budget_s == 2.0
    assert run_.spent_s < spent + 2.0, "the budget continued where it stopped"
    archive.close()


def test_stop_mid_run_leaves_nothing_running(tmp_path: Path) -> None:
    path = write_population(
        tmp_path / "p.toml", backend="process", workers=2, latency_s=0.2, max_nodes=200
    )
    db = tmp_path / "run.db"
    config = load_population(path)

    async def scenario() -> Daemon:
        daemon = Daemon(config, str(db), install_signals=False)
        task = asyncio.ensure_future(daemon.run())
        while daemon.state is None or daemon.state.n_finished < 5:
            await asyncio.sleep(0.05)
        daemon.halt("test")
        await task
        return daemon

    daemon = asyncio.run(scenario())
    assert daemon.state is not None and daemon.state.stop_reason == "test"
    archive = Archive.open(str(db), read_only=True)
    run_ = archive.get_run()
    nodes = archive.nodes(run_.run_id)
    assert not [n for n in nodes if n.status is NodeStatus.RUNNING]
    assert run_.status == "finished"
    n_unfinished = sum(not n.status.finished for n in nodes)
    archive.close()
    # resume finishes the abandoned nodes first
    resumed = Daemon(None, str(db), resume=True, max_nodes=len(nodes), install_signals=False)
    asyncio.run(resumed.run())
    archive = Archive.open(str(db), read_only=True)
    after = archive.nodes(archive.get_run().run_id)
    assert all(n.status.finished for n in after)
    assert len(after) == len(nodes)
    assert n_unfinished >= 0
    archive.close()


def test_run_refuses_existing_db(tmp_path: Path, population: Path) -> None:
    db = tmp_path / "run.db"
    db.write_bytes(b"")
    with pytest.raises(RunStateError, match="already exists"):
        run(population, db)


def test_event_loop_never_blocks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """asyncio debug mode logs every callback slower than 100 ms; there must be none."""
    path = write_population(
        tmp_path / "p.toml", max_nodes=120, backend="process", workers=2, test_eval=True
    )
    config = load_population(path)

    async def main() -> None:
        asyncio.get_running_loop().slow_callback_duration = 0.1
        await Daemon(config, str(tmp_path / "run.db"), install_signals=False).run()

    # A full garbage collection scans every object of the process: with torch, SQLAlchemy and
    # the packages imported that is ~250k objects and ~130 ms here, more after the rest of the
    # suite (a whole-suite run once saw a 316 ms step). Freeze what exists before the run so
    # the collector scans the daemon's own objects; the daemon process itself does the same.
    gc.collect()
    gc.freeze()
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            asyncio.run(main(), debug=True)
    finally:
        gc.unfreeze()
    slow = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert not slow, slow
