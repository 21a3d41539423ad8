"""AIRS-Bench task directories: export, read back, score a submission, search one (`aira run`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aira_async.airs_bench import (
    RESULT_MARKER,
    apply_task_dir,
    export_task,
    load_task_dir,
    read_submission,
)
from aira_async.config import DaemonConfig, TaskConfig, data_from_env, load_population
from aira_async.errors import ConfigError
from aira_async.tasks import describe, task_spec
from store import Archive
from tests.assets.lm.make_corpus import write_corpus

FILES = {"project_description.md", "prepare.py", "evaluate_prepare.py", "evaluate.py"}
LOGGING_KEYS = {
    "name", "dataset", "category", "research_problem", "output_type", "config", "train_split",
    "test_split", "input_columns", "scoring_column", "shape", "metric", "sota",
    "dataset_paper_url", "estimated_worst_score", "optimal_score",
}  # fmt: skip
POPULATION = """\
[run]
name = "airs"
budget = "5m"
shutdown_grace_s = 10
heartbeat_s = 0.2

[task]
name = "{task}"
fidelity = "smoke"
length = 4
alphabet = ["mA", "M"]
test_eval = {test_eval}
{data_line}

[evaluation]
backend = "process"
workers = 2
timeout_s = 240

[[agents]]
name = "evo"
proposer = "evolution"
policy = "greedy"
[agents.policy_params]
num_drafts = 2
"""


def aira(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aira_async", *args],
        capture_output=True, text=True, timeout=240, cwd=cwd,
    )  # fmt: skip


def population(
    path: Path, task: str = "mad", data: Path | None = None, test: bool = False
) -> Path:
    path.write_text(
        POPULATION.format(
            task=task,
            test_eval="true" if test else "false",
            data_line="" if data is None else f'data = "{data}"',
        )
    )
    return path


def test_export_writes_the_airs_bench_files(tmp_path: Path) -> None:
    task = TaskConfig(name="mad", fidelity="smoke", length=4, alphabet=("mA", "M"))
    folder = export_task(task, tmp_path / "mad-compose")
    assert FILES | {"metadata.yaml"} <= {p.name for p in folder.iterdir()}
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert meta["metric_lower_is_better"] is False
    assert {"file_export_globs", "container_python_requirements"} <= set(meta)
    assert "evaluate_container_python_requirements" in meta
    assert set(meta["logging_info"]) == LOGGING_KEYS
    assert meta["logging_info"]["name"] == "mad-compose"
    assert meta["logging_info"]["optimal_score"] == 1.0
    assert set(meta["logging_info"]["sota"][0]) == {
        "sota_paper_title", "sota_paper_url", "sota_score", "sota_year", "sota_venue",
    }  # fmt: skip
    text = (folder / "project_description.md").read_text()
    assert "mean_accuracy" in text and "submission.csv" in text
    with pytest.raises(ConfigError, match="--force"):
        export_task(task, folder)
    loaded = load_task_dir(folder)
    assert loaded.task.name == "mad" and loaded.task.length == 4 and not loaded.lower_is_better
    assert describe(loaded.task) == text  # the agents' project description
    config = apply_task_dir(load_population(population(tmp_path / "p.toml")), loaded)
    assert isinstance(config, DaemonConfig) and config.task.source == str(folder.resolve())
    assert task_spec(config.task).maximize


def test_directory_checks(tmp_path: Path) -> None:
    folder = export_task(TaskConfig(name="babistories"), tmp_path / "lm")
    meta = yaml.safe_load((folder / "metadata.yaml").read_text())
    assert meta["metric_lower_is_better"] is True and meta["logging_info"]["metric"] == "loss"
    with pytest.raises(ConfigError, match="needs its corpus"):
        load_task_dir(folder)  # no data anywhere
    assert load_task_dir(folder, data=str(tmp_path)).task.data == str(tmp_path)
    meta["metric_lower_is_better"] = False
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ConfigError, match="contradicts"):
        load_task_dir(folder, data=str(tmp_path))
    del meta["aira"]
    (folder / "metadata.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ConfigError, match="no 'aira' section"):
        load_task_dir(folder)
    (tmp_path / "babistories").mkdir()
    assert data_from_env("babistories", {"AIRA_DATA_DIR": str(tmp_path)}) == str(
        tmp_path / "babistories"
    )
    assert data_from_env("dclm", {"AIRA_DATA_DIR": str(tmp_path)}) is None


def test_submission_format(tmp_path: Path) -> None:
    sub = tmp_path / "submission.csv"
    sub.write_text("arrangement\nmA M mA M\n")
    assert read_submission(sub, length=4, alphabet=("mA", "M")) == ("mA", "M", "mA", "M")
    for text, problem in (
        ("arrangement\nmA M\n", "expected 4"),
        ("arrangement\nmA M Mb M\n", "not allowed"),
        ("layers\nmA M mA M\n", "column"),
    ):
        sub.write_text(text)
        with pytest.raises(ValueError, match=problem):
            read_submission(sub, length=4, alphabet=("mA", "M"))


def test_exported_lm_task_prepares_and_scores_a_submission(tmp_path: Path) -> None:
    shared = write_corpus(tmp_path / "shared", n_train=400, n_test=120)
    lm = TaskConfig(name="babistories", length=4, alphabet=("mA", "M"))
    task = export_task(lm, tmp_path / "task")
    mount = tmp_path / "agent"
    for script in ("prepare.py", "evaluate_prepare.py"):
        dirs = ["--global-shared-data-dir", str(shared), "--agent-data-mount-dir", str(mount)]
        run = subprocess.run(
            [sys.executable, str(task / script), *dirs],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
    assert {p.name for p in mount.iterdir()} == {"sample_submission.csv", "train.jsonl"}
    assert (task / "eval_data" / "test.jsonl").exists()  # test text only for the scorer
    sub = tmp_path / "submission.csv"
    sub.write_text((mount / "sample_submission.csv").read_text())
    run = subprocess.run(
        [sys.executable, str(task / "evaluate.py"), "--submission-file", str(sub)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    marker, payload = run.stdout.strip().splitlines()[-2:]
    assert marker == RESULT_MARKER
    loss = json.loads(payload)["loss"]
    assert 0 < loss < 7
    sub.write_text("arrangement\nmA Mb\n")
    bad = subprocess.run(
        [sys.executable, str(task / "evaluate.py"), "--submission-file", str(sub)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1 and json.loads(bad.stdout.splitlines()[-1]) == {"loss": None}


def test_search_on_an_exported_mad_directory(tmp_path: Path) -> None:
    task = tmp_path / "mad-task"
    assert aira("task", "export", "mad", str(task), "--length", "4", "--alphabet", "mA M")\
        .returncode == 0  # fmt: skip
    db = tmp_path / "run.db"
    pop = population(tmp_path / "p.toml")  # its [task] is replaced by the directory's
    result = aira("run", "--task", str(task), "-p", str(pop), "--db", str(db), "--max-nodes", "2",
                  "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    archive = Archive.open(str(db), read_only=True)
    try:
        run = archive.get_run()
        nodes = archive.nodes(run.run_id)
    finally:
        archive.close()
    stored = run.config["task"]
    assert stored["name"] == "mad" and stored["length"] == 4
    assert stored["source"] == str(task.resolve())
    assert stored["description"] == (task / "project_description.md").read_text()
    assert len(nodes) == 2 and all(n.val_fitness is not None for n in nodes)
    assert all(len(n.proposal_key.split()) == 4 for n in nodes)


def test_lm_search_through_the_daemon(tmp_path: Path) -> None:
    data = write_corpus(tmp_path / "stories", n_train=400, n_test=120)
    pop = population(tmp_path / "lm.toml", "babistories", data=data, test=True)
    db = tmp_path / "lm.db"
    result = aira("run", "-p", str(pop), "--db", str(db), "--max-nodes", "3", "-q")
    assert result.returncode == 0, result.stderr
    archive = Archive.open(str(db), read_only=True)
    try:
        run = archive.get_run()
        nodes = archive.nodes(run.run_id)
    finally:
        archive.close()
    assert len(nodes) == 3
    good = [n for n in nodes if n.val_fitness is not None]
    assert good and all(0 < n.val_fitness < 7 for n in good)  # type: ignore[operator]
    best = min(good, key=lambda n: n.val_fitness or 0.0)
    assert f"{best.val_fitness:.4f}" in result.stdout  # lower is better: the leaderboard's top
