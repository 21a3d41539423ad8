"""Every released schema has a sample archive; each must open (after `upgrade` if older)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from populations.records import EvalStatus, NodeStatus, Operator
from store import Archive, RunStatus, SchemaVersionError, current_revision, head_revision, upgrade
from store.engine import make_engine
from tests.store.builders import key

SAMPLES = sorted((Path(__file__).parents[1] / "assets" / "store").glob("schema_*.db"))


def test_there_is_a_sample_of_head() -> None:
    assert f"schema_{head_revision()}.db" in [path.name for path in SAMPLES]


@pytest.mark.parametrize("sample", SAMPLES, ids=[path.stem for path in SAMPLES])
def test_sample_opens_after_upgrade(sample: Path, tmp_path: Path) -> None:
    path = tmp_path / sample.name
    shutil.copyfile(sample, path)
    engine = make_engine(path, read_only=True)
    try:
        stored = current_revision(engine)
    finally:
        engine.dispose()
    assert sample.name == f"schema_{stored}.db"
    if stored != head_revision():
        with pytest.raises(SchemaVersionError, match="aira db upgrade"):
            Archive.open(path)
    assert upgrade(path) == (stored, head_revision())

    with Archive.open(path, read_only=True) as archive:
        run = archive.get_run()
        assert (run.name, run.status, run.spent_s, run.max_nodes) == (
            "sample",
            RunStatus.STOPPED,
            120.5,
            50,
        )
        assert run.config["task"] == {"name": "mad", "fidelity": "smoke"}
        agents = archive.agents(run.run_id)
        assert [(a.name, a.policy, a.island) for a in agents] == [
            ("greedy-0", "greedy", "north"),
            ("mcts-0", "mcts", "north"),
        ]
        assert archive.status_counts(run.run_id) == {
            "pending": 0,
            "running": 1,
            "complete": 3,
            "failed": 2,
        }
        assert [n.proposal for n in archive.top(run.run_id)] == ["mA M mA M", "M M M M"]
        lineage = archive.lineage(6)
        assert [(n.node_id, n.operator) for n in lineage] == [
            (4, Operator.DRAFT),
            (6, Operator.IMPROVE),
        ]
        assert archive.stats(agents[1].agent_id)[0].visits == 2
        found = archive.find_evaluation(key("M M M M"))
        assert found is not None and (found.status, found.score) == (EvalStatus.OK, 0.42)
        assert archive.find_evaluation(key("mA mA mA mA")) is None  # timed out: not reusable
        assert [e.kind for e in archive.events(run.run_id)] == ["migrate"]

    with Archive.open(path) as archive:  # and it resumes: the running node is requeued
        assert archive.requeue_stale(1) == 1
        assert archive.node(6).status is NodeStatus.PENDING
