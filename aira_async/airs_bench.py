"""AIRS-Bench task directories (FACTS §3): export aira's tasks as one, and search one.

``export_task(task, DIR)`` writes the five files of an AIRS-Bench task:

- ``project_description.md``: the agent's prompt (task, data, what to submit, how it is scored);
- ``prepare.py`` / ``evaluate_prepare.py``: the CLI ``--global-shared-data-dir``,
  ``--agent-data-mount-dir``, ``--agent-log-dir``. The first gives the agent a sample
  submission (and, for LM tasks, the *train* files only); the second gives the scorer the whole
  corpus under ``DIR/eval_data`` (MAD needs nothing: its rows are generated inside the evaluator);
- ``evaluate.py --submission-file submission.csv``: trains the submitted arrangement from scratch
  on all of train with aira's trusted evaluator, scores the withheld test set and prints
  ``--- EVALUATION RESULT ---`` then a JSON dict ``{metric: value}``;
- ``metadata.yaml``: the keys AIRS-Bench reads (``metric_lower_is_better``, ``file_export_globs``,
  the container requirements, ``logging_info`` with its fields) plus an ``aira`` section that
  says which aira task, fidelity, seed, length and alphabet the directory stands for.

A submission is a CSV with one column ``arrangement`` and one row: the primitives separated by
spaces (``mA M mA M ...``).

``load_task_dir(DIR)`` reads such a directory back (``aira run --task DIR``): the description
becomes the agents' project description and the metric direction comes from
``metric_lower_is_better``, checked against the evaluator's (a contradiction is refused).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aira_async.config import DaemonConfig, TaskConfig, data_from_env
from aira_async.errors import ConfigError
from aira_async.tasks import LM_TASK_NAMES, TASKS, task_spec

__all__ = [
    "RESULT_MARKER",
    "SUBMISSION_COLUMN",
    "TaskDir",
    "apply_task_dir",
    "export_task",
    "load_task_dir",
    "prepare_agent_data",
    "prepare_eval_data",
    "read_submission",
    "score_submission",
]

RESULT_MARKER = "--- EVALUATION RESULT ---"
SUBMISSION_COLUMN = "arrangement"
FORMAT_VERSION = 1
FILES = (
    "project_description.md",
    "prepare.py",
    "evaluate_prepare.py",
    "evaluate.py",
    "metadata.yaml",
)
_PAPER = {
    "sota_paper_title": "Agentic Discovery of Neural Architectures: AIRA-Compose and AIRA-Design",
    "sota_paper_url": "https://arxiv.org/abs/2605.15871",
    "sota_score": None,  # not reported for this proxy and fidelity
    "sota_year": 2026,
    "sota_venue": "arXiv",
}
_DATASETS = {
    "mad": ("MAD synthetic tasks", "https://arxiv.org/abs/2403.17844"),
    "babistories": ("BabiStories", "https://arxiv.org/abs/2405.06394"),
    "dclm": ("DCLM-baseline subset", "https://arxiv.org/abs/2406.11794"),
}


@dataclass(frozen=True, kw_only=True)
class TaskDir:
    """An AIRS-Bench task directory as aira reads it."""

    path: Path
    name: str
    metric: str
    lower_is_better: bool
    description: str
    task: TaskConfig
    metadata: Mapping[str, Any]


def _worst_score(task: TaskConfig) -> float:
    """MAD: 0 accuracy. LM: the loss of a uniform guess over the fidelity's vocabulary."""
    if task.name not in LM_TASK_NAMES:
        return 0.0
    vocab = {"smoke": 512, "paper": 8192}.get(task.fidelity, 8192)
    return round(math.log(vocab), 4)


def _metadata(task: TaskConfig, name: str) -> dict[str, Any]:
    spec = TASKS[task.name]
    dataset, dataset_url = _DATASETS[task.name]
    requirement = "aira-async[lm]" if task.name in LM_TASK_NAMES else "aira-async"
    return {
        "metric_lower_is_better": not spec.maximize,
        "file_export_globs": ["submission.csv"],
        "container_python_requirements": [requirement],
        "evaluate_container_python_requirements": [requirement],
        "logging_info": {
            "name": name,
            "dataset": dataset,
            "category": "Neural architecture search",
            "research_problem": "Layer arrangement search (AIRA-Compose)",
            "output_type": "arrangement",
            "config": task.fidelity,
            "train_split": "train",
            "test_split": "test",
            "input_columns": [SUBMISSION_COLUMN],
            "scoring_column": SUBMISSION_COLUMN,
            "shape": [1, 1],
            "metric": spec.metric,
            "sota": [dict(_PAPER)],
            "dataset_paper_url": dataset_url,
            "estimated_worst_score": _worst_score(task),
            "optimal_score": 1.0 if spec.maximize else 0.0,
        },
        "aira": {
            "format_version": FORMAT_VERSION,
            "task": task.name,
            "fidelity": task.fidelity,
            "seed": task.seed,
            "length": task.length,
            "alphabet": list(task.alphabet),
            "data": task.data,
        },
    }


def _description(task: TaskConfig, metric: str, maximize: bool) -> str:
    example = " ".join((task.alphabet * task.length)[: task.length])
    if task.name in LM_TASK_NAMES:
        data = (
            "The training corpus is in your data directory (the files named `train*`), for"
            " reference only: the evaluator trains the model itself. Test text is withheld."
        )
    else:
        data = (
            "There is no data to download: the evaluator generates the six tasks' rows from a"
            " fixed seed. Test rows are withheld."
        )
    direction = "higher" if maximize else "lower"
    return (
        TASKS[task.name]
        .description.format(length=task.length, alphabet=", ".join(task.alphabet), example=example)
        .rstrip()
        + "\n\n## Data\n"
        + textwrap.fill(data, 99)
        + "\n\n## Submission\n"
        + f"Write `submission.csv` with one column `{SUBMISSION_COLUMN}` and one row:"
        + f" {task.length} primitives separated by spaces.\n\n"
        + f"```\n{SUBMISSION_COLUMN}\n{example}\n```\n\n"
        + "## Evaluation\n"
        + textwrap.fill(
            f"`evaluate.py` trains the submitted arrangement from scratch on all of train at"
            f" aira's `{task.fidelity}` fidelity (seed {task.seed}) and scores it on the withheld"
            f" test set. Metric: `{metric}` ({direction} is better).",
            99,
        )
        + "\n"
    )


_SCRIPT_HEAD = '''\
#!/usr/bin/env python3
"""{doc} (written by `aira task export`; needs aira installed)."""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
'''

_PREPARE_ARGS = """
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--global-shared-data-dir", type=Path, default=None)
    parser.add_argument("--agent-data-mount-dir", type=Path, required=True)
    parser.add_argument("--agent-log-dir", type=Path, default=None)
    args = parser.parse_args()
"""

_PREPARE = (
    _SCRIPT_HEAD.format(doc="Give the agent its data: a sample submission, and train files only")
    + _PREPARE_ARGS
    + """    from aira_async.airs_bench import prepare_agent_data

    n = prepare_agent_data(HERE, args.global_shared_data_dir, args.agent_data_mount_dir)
    print(f"prepared {args.agent_data_mount_dir}: sample_submission.csv and {n} data files")


if __name__ == "__main__":
    main()
"""
)

_EVALUATE_PREPARE = (
    _SCRIPT_HEAD.format(doc="Give the scorer the whole corpus (test included) under eval_data/")
    + _PREPARE_ARGS
    + """    from aira_async.airs_bench import prepare_eval_data

    n = prepare_eval_data(HERE, args.global_shared_data_dir)
    print(f"copied {n} data files to {HERE / 'eval_data'}")


if __name__ == "__main__":
    main()
"""
)

_EVALUATE = (
    _SCRIPT_HEAD.format(doc="Train and score a submitted arrangement with aira's evaluator")
    + """import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--submission-file", type=Path, default=Path("submission.csv"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data", default=None, help="LM tasks: the corpus (else eval_data/)")
    args = parser.parse_args()
    from aira_async.airs_bench import RESULT_MARKER, score_submission

    metric, value, error = score_submission(
        HERE, args.submission_file, device=args.device, data=args.data
    )
    print(RESULT_MARKER)
    print(json.dumps({metric: value}))
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
"""
)


def export_task(task: TaskConfig, out_dir: Path, *, overwrite: bool = False) -> Path:
    """Write ``task`` as an AIRS-Bench directory ``out_dir`` (its name is the task's name).

    Raises:
        ConfigError: an unknown task or fidelity, the synthetic task, or ``out_dir`` holding a
            task already (unless ``overwrite``).
    """
    if task.name not in _DATASETS:
        raise ConfigError(f"task {task.name!r} cannot be exported (known: {', '.join(_DATASETS)})")
    spec = TASKS[task.name]
    if task.fidelity not in spec.fidelities:
        raise ConfigError(
            f"unknown fidelity {task.fidelity!r} for {task.name}"
            f" (known: {', '.join(spec.fidelities)})"
        )
    # An LM task exported without a corpus finds it at evaluation time (eval_data/, --data or
    # $AIRA_DATA_DIR); the description and metadata do not depend on it.
    existing = [name for name in FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{out_dir} already holds {existing[0]} (pass --force to overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = _metadata(task, out_dir.resolve().name)
    (out_dir / "project_description.md").write_text(_description(task, spec.metric, spec.maximize))
    (out_dir / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    for name, text in (
        ("prepare.py", _PREPARE),
        ("evaluate_prepare.py", _EVALUATE_PREPARE),
        ("evaluate.py", _EVALUATE),
    ):
        (out_dir / name).write_text(text)
        (out_dir / name).chmod(0o755)
    return out_dir


def _read_metadata(path: Path) -> dict[str, Any]:
    meta_path = path / "metadata.yaml"
    try:
        data = yaml.safe_load(meta_path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no metadata.yaml (not an AIRS-Bench task directory)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{meta_path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{meta_path}: expected a mapping at the top level")
    return data


def _task_config(path: Path, meta: Mapping[str, Any], data: str | None) -> TaskConfig:
    """The task section a directory stands for (not yet checked against the registry)."""
    aira = meta.get("aira")
    if not isinstance(aira, dict):
        info = meta.get("logging_info")
        dataset = info.get("dataset") if isinstance(info, dict) else None
        raise ConfigError(
            f"{path}/metadata.yaml: no 'aira' section, so no aira evaluator is known for"
            f" dataset {dataset!r} (export one with `aira task export`)"
        )
    name = aira.get("task")
    if name not in TASKS or name == "synthetic":
        raise ConfigError(f"{path}/metadata.yaml: aira.task {name!r} is not an exportable task")
    lower = meta.get("metric_lower_is_better")
    if not isinstance(lower, bool):
        raise ConfigError(f"{path}/metadata.yaml: metric_lower_is_better must be true or false")
    corpus = data or aira.get("data") or _local_data(path) or data_from_env(str(name))
    try:
        description = (path / "project_description.md").read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no project_description.md") from None
    try:
        return TaskConfig(
            name=str(name),
            fidelity=str(aira.get("fidelity", "smoke")),
            seed=int(aira.get("seed", 0)),
            length=int(aira.get("length", 16)),
            alphabet=tuple(str(p) for p in aira.get("alphabet", ("mA", "M", "Mb"))),
            data=None if corpus is None else str(corpus),
            description=description,
            lower_is_better=lower,
            source=str(path.resolve()),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}/metadata.yaml: bad aira section: {exc}") from None


def load_task_dir(path: str | Path, *, data: str | None = None) -> TaskDir:
    """Read an AIRS-Bench task directory written by :func:`export_task`.

    Args:
        path: the directory.
        data: LM tasks: the corpus, overriding ``aira.data``, ``DIR/eval_data`` (what
            ``evaluate_prepare.py`` copies) and ``$AIRA_DATA_DIR/<task>``, in that order.

    Raises:
        ConfigError: a missing file or key, an unknown task, an LM task without a corpus, or a
            metric direction that contradicts the evaluator's.
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"task directory not found: {path}")
    meta = _read_metadata(path)
    task = _task_config(path, meta, data)
    spec = task_spec(task)  # checks fidelity, data and the direction
    info = meta.get("logging_info")
    info = info if isinstance(info, dict) else {}
    return TaskDir(
        path=path,
        name=str(info.get("name", path.name)),
        metric=str(info.get("metric", spec.metric)),
        lower_is_better=bool(task.lower_is_better),
        description=task.description or "",
        task=task,
        metadata=meta,
    )


def _local_data(path: Path) -> str | None:
    """The corpus that ``evaluate_prepare.py`` copied next to the task, if any."""
    local = path / "eval_data"
    return str(local) if local.is_dir() and any(local.iterdir()) else None


def apply_task_dir(config: DaemonConfig, task_dir: TaskDir) -> DaemonConfig:
    """``config`` searching ``task_dir``'s task; the population keeps test_eval and latency."""
    task = dataclasses.replace(
        task_dir.task, test_eval=config.task.test_eval, latency_s=config.task.latency_s
    )
    return dataclasses.replace(config, task=task)


def read_submission(path: Path, *, length: int, alphabet: tuple[str, ...]) -> tuple[str, ...]:
    """The arrangement in a ``submission.csv``. Raises ValueError naming what is wrong."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise ValueError(f"submission file not found: {path}") from None
    if not rows or SUBMISSION_COLUMN not in rows[0]:
        raise ValueError(f"{path}: expected a column {SUBMISSION_COLUMN!r} and one row")
    if len(rows) != 1:
        raise ValueError(f"{path}: expected one row, got {len(rows)}")
    layers = tuple((rows[0][SUBMISSION_COLUMN] or "").split())
    if len(layers) != length:
        raise ValueError(f"{path}: expected {length} primitives, got {len(layers)}")
    bad = sorted({p for p in layers if p not in alphabet})
    if bad:
        raise ValueError(f"{path}: primitives {bad} are not allowed (allowed: {alphabet})")
    return layers


def score_submission(
    task_path: Path, submission: Path, *, device: str = "cpu", data: str | None = None
) -> tuple[str, float | None, str | None]:
    """(metric, test score or None, error or None) of a submission, as ``evaluate.py`` prints.

    Raises:
        ConfigError: the task directory cannot be read (see :func:`load_task_dir`).
    """
    task_dir = load_task_dir(task_path, data=data)
    task = task_dir.task
    try:
        layers = read_submission(submission, length=task.length, alphabet=task.alphabet)
    except ValueError as exc:
        return task_dir.metric, None, str(exc)
    from primitives.evaluator import EvalJob, evaluate  # torch only where a model is trained

    job = EvalJob(
        layers=layers,
        task=task.name,
        fidelity=task.fidelity,
        seed=task.seed,
        split="test",
        device=device,
        data=task.data,
    )
    try:
        (result,) = evaluate([job])
    except ValueError as exc:
        return task_dir.metric, None, str(exc)
    if result.status != "ok":
        return task_dir.metric, None, f"{result.status}: {result.error}"
    return task_dir.metric, result.score, None


def _data_files(root: Path | None, *, train_only: bool) -> list[Path]:
    from primitives.lm_data import DATA_SUFFIXES

    if root is None or not root.is_dir():
        return []
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    if train_only:
        files = [p for p in files if not p.name.startswith(("test", "valid", "validation"))]
    return files


def prepare_agent_data(task_path: Path, shared: Path | None, mount: Path) -> int:
    """``prepare.py``: a sample submission and, for LM tasks, the train files only.

    Returns the number of data files copied.
    """
    task = _task_config(task_path, _read_metadata(task_path), None)
    mount.mkdir(parents=True, exist_ok=True)
    example = " ".join((task.alphabet * task.length)[: task.length])
    (mount / "sample_submission.csv").write_text(f"{SUBMISSION_COLUMN}\n{example}\n")
    copied = 0
    if task.name in LM_TASK_NAMES:
        for src in _data_files(shared, train_only=True):
            shutil.copy2(src, mount / src.name)
            copied += 1
    return copied


def prepare_eval_data(task_path: Path, shared: Path | None) -> int:
    """``evaluate_prepare.py``: copy the whole corpus (test included) to ``task_path/eval_data``.

    Returns the number of files copied (0 for MAD, whose rows the evaluator generates).
    """
    files = _data_files(shared, train_only=False)
    if files:
        target = task_path / "eval_data"
        target.mkdir(parents=True, exist_ok=True)
        for src in files:
            shutil.copy2(src, target / src.name)
    return len(files)
