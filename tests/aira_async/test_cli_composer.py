"""`aira aggregate` and `aira extrapolate` as a user runs them (subprocesses, exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aira_async import composer
from populations.aggregator import aggregate
from populations.records import NodeStatus, Split
from primitives.model import ModelConfig, build_model
from store import Archive
from tests.store.builders import new_node, ok

# The pool of tests/populations/test_aggregator.py, with validation scores that rank it the
# other way round (so the output shows which score was used).
TEST_SCORES = {
    "Mb Mb Mb Mb": 0.95, "Mb Mb Mb M": 0.94, "mA M M M": 0.90, "M mA mA M": 0.89,
    "mA M mA mA": 0.88, "M M M M": 0.87, "mA M mA M": 0.86, "mA mA mA mA": 0.85,
}  # fmt: skip


def aira(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aira_async", *args], capture_output=True, text=True, timeout=120
    )


def build_archive(path: Path, *, with_test: bool) -> None:
    config = {"task": {"name": "synthetic", "length": 4}}
    with Archive.create(path) as archive:
        run = archive.create_run("composer", config, "hash", seed=0, budget_s=60.0)
        agents = [
            archive.add_agent(run.run_id, f"agent-{i}", None, "random", "greedy", {})
            for i in range(2)
        ]
        for step, (text, test_score) in enumerate(TEST_SCORES.items()):
            agent = agents[step % 2]
            (node,) = archive.add_nodes(run.run_id, agent.agent_id, step, [new_node(text)])
            val = 1.0 - test_score
            archive.finish_node(node.node_id, status=NodeStatus.COMPLETE,
                                outcome=ok(node, val), val_fitness=val, error=None)  # fmt: skip
            if with_test:
                archive.record_test(node.node_id, ok(node, test_score, split=Split.TEST))
        (bad,) = archive.add_nodes(run.run_id, agents[0].agent_id, 99, [new_node("mA")])
        archive.finish_node(bad.node_id, status=NodeStatus.FAILED, outcome=None,
                            val_fitness=None, error="diverged")  # fmt: skip


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("composer")
    paths = {"test": root / "with_test.db", "val": root / "val_only.db"}
    build_archive(paths["test"], with_test=True)
    build_archive(paths["val"], with_test=False)
    return paths


def test_aggregate_json_uses_test_scores(archives: dict[str, Path]) -> None:
    result = aira("aggregate", "--db", str(archives["test"]), "--top", "8", "--radius", "2",
                  "--variant", "N_all", "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["arrangement"] == "mA M mA mA"
    assert payload["score_source"] == "test" and payload["maximize"] is True
    assert payload["n_submissions"] == 8 and payload["cluster_sizes"] == [6, 2]
    assert [row["layer"] for row in payload["layers"]] == [1, 2, 3, 4]
    assert payload["layers"][3]["given"] == "1=mA 2=M 3=mA"


def test_aggregate_table_falls_back_to_validation(archives: dict[str, Path]) -> None:
    result = aira("aggregate", "--db", str(archives["val"]), "--top", "2", "--variant", "N_0")
    assert result.returncode == 0, result.stderr
    # Validation ranks the pool the other way: the two best are F and E.
    assert "aggregated (N_0): mA mA mA mA" in result.stdout
    assert "scored by validation fitness" in result.stdout
    assert "per-layer decisions" in result.stdout and "majority" in result.stdout


def test_every_variant_on_the_archive(archives: dict[str, Path]) -> None:
    """In process (the CLI's own functions), so the three variants cost no subprocesses."""
    expected = {"N_0": "mA M mA M", "N_1": "mA M M M", "N_all": "mA M mA mA"}
    with Archive.open(archives["test"], read_only=True) as archive:
        pool = composer.load_submissions(archive)
        assert pool.source == "test" and pool.n_complete == 8 and pool.n_with_test == 8
        for variant, arrangement in expected.items():
            result = aggregate(pool.submissions, top=8, variant=variant, radius=2)
            payload = composer.aggregate_payload(pool, result)
            assert payload["arrangement"] == arrangement
            assert composer.layer_rows(payload)[0]["votes"] == "mA:4 M:2"
    with Archive.open(archives["val"], read_only=True) as archive:
        assert composer.load_submissions(archive).source == "validation"
        with pytest.raises(ValueError, match="no node with a test score"):
            composer.load_submissions(archive, "test")


def test_extrapolate_json_is_a_buildable_1b_config() -> None:
    result = aira("extrapolate", "(mA M)x8", "--target", "1B", "--mode", "stack",
                  "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["n_params"] == 1_235_814_400
    assert payload["arrangement"] == " ".join(["mA M"] * 16)
    cfg = ModelConfig.from_dict(payload["model_config"])
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == 1_235_814_400


def test_extrapolate_stretch_table_and_baseline_names() -> None:
    result = aira("extrapolate", "striped-1:2", "--target", "350M")
    assert result.returncode == 0, result.stderr
    assert "mA mA M M M M mA mA" in result.stdout and "350M by stretch" in result.stdout
    assert "420,774,912" in result.stdout  # 12 mA, 20 M at the 350M shape
