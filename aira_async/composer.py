"""The Composer pipeline as the CLI shows it: `aira aggregate` and `aira extrapolate`.

Pure functions over a read-only `Archive` and frozen results; `cli.py` prints what they return.

- `load_submissions` pools every agent's scored nodes of the latest run. The score is the test
  fitness when the run has any (the paper aggregates submissions with their test scores; nodes
  without one are then left out), else the validation fitness; `score="test"` or
  ``"validation"`` forces one. The result says which it used.
- `aggregate_payload` / `aggregate_tables` and `extrapolate_payload` / `extrapolate_table` turn
  the results of `populations.aggregator.aggregate` and `primitives.extrapolate.extrapolate` into
  plain data (the ``--format json`` output) and rich tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.table import Table

from aira_async.tasks import TASKS
from populations.aggregator import Aggregate, Submission
from populations.arrangement import Arrangement, ArrangementError
from populations.records import NodeStatus
from store import Archive

if TYPE_CHECKING:
    from primitives.extrapolate import Extrapolation

__all__ = [
    "SCORE_SOURCES",
    "SubmissionPool",
    "aggregate_payload",
    "aggregate_tables",
    "extrapolate_payload",
    "extrapolate_table",
    "load_submissions",
]

SCORE_SOURCES: tuple[str, ...] = ("auto", "test", "validation")


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmissionPool:
    """The scored nodes of one run, and where their scores came from."""

    run_id: int
    task: str
    maximize: bool
    source: str  # "test" or "validation"
    submissions: tuple[Submission, ...]
    n_complete: int
    n_with_test: int


def load_submissions(archive: Archive, score: str = "auto") -> SubmissionPool:
    """Every COMPLETE node of the latest run with a finite score of the chosen ``score`` source.

    Raises:
        ValueError: an unknown ``score`` source or task, or no node has a score to aggregate.
    """
    if score not in SCORE_SOURCES:
        raise ValueError(f"--score: unknown source {score!r} (known: {', '.join(SCORE_SOURCES)})")
    run = archive.get_run()
    task = str(run.config.get("task", {}).get("name", ""))
    spec = TASKS.get(task)
    if spec is None:
        raise ValueError(f"run {run.run_id}: unknown task {task!r}; cannot tell the direction")
    names = {a.agent_id: a.name for a in archive.agents(run.run_id)}
    nodes = archive.nodes(run.run_id, statuses=(NodeStatus.COMPLETE,))
    n_test = sum(n.test_fitness is not None for n in nodes)
    source = ("test" if n_test else "validation") if score == "auto" else score
    submissions: list[Submission] = []
    for n in nodes:
        value = n.test_fitness if source == "test" else n.val_fitness
        if value is None or not math.isfinite(value):
            continue
        try:
            layers = Arrangement.parse(n.proposal).layers
        except ArrangementError:
            continue
        submissions.append(
            Submission(
                layers=layers, score=value, node_id=n.node_id, agent=names.get(n.agent_id, "")
            )
        )
    if not submissions:
        raise ValueError(
            f"run {run.run_id} has no node with a {source} score to aggregate"
            + (" (try --score validation)" if source == "test" else "")
        )
    return SubmissionPool(
        run_id=run.run_id,
        task=task,
        maximize=spec.maximize,
        source=source,
        submissions=tuple(submissions),
        n_complete=len(nodes),
        n_with_test=n_test,
    )


def aggregate_payload(pool: SubmissionPool, result: Aggregate) -> dict[str, Any]:
    """Everything `aira aggregate` reports, as plain JSON data."""
    return {
        "arrangement": result.arrangement.key,
        "variant": result.variant.value,
        "run_id": pool.run_id,
        "task": pool.task,
        "score_source": pool.source,
        "maximize": result.maximize,
        "n_submissions": result.n_submissions,
        "n_dropped_other_depth": result.n_dropped,
        "n_candidates": len(result.candidates),
        "radius": result.radius,
        "cluster_sizes": [len(c) for c in result.clusters],
        "members": [
            {
                "arrangement": c.key,
                "score": c.score,
                "n_submissions": c.n_submissions,
                "nodes": list(c.node_ids),
            }
            for c in result.members
        ],
        "layers": [
            {
                "layer": d.position,
                "chosen": d.chosen,
                "given": " ".join(f"{i}={p}" for i, p in d.context.items()),
                "support": d.support,
                "counts": d.counts,
                "mean_scores": d.mean_scores,
                "reason": d.reason,
            }
            for d in result.decisions
        ],
    }


def _counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{p}:{n}" for p, n in counts.items())


def layer_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per layer (the table and CSV view of the decisions)."""
    return [
        {
            "layer": row["layer"],
            "chosen": row["chosen"],
            "given": row["given"] or "-",
            "support": row["support"],
            "votes": _counts_text(row["counts"]),
            "reason": row["reason"],
        }
        for row in payload["layers"]
    ]


def aggregate_tables(payload: dict[str, Any]) -> tuple[str, Table]:
    """A headline and the per-layer decision table."""
    direction = "higher" if payload["maximize"] else "lower"
    sizes = ", ".join(str(s) for s in payload["cluster_sizes"])
    headline = (
        f"aggregated ({payload['variant']}): {payload['arrangement']}\n"
        f"run {payload['run_id']} ({payload['task']}): {payload['n_submissions']} submissions"
        f" scored by {payload['score_source']} fitness ({direction} is better); top"
        f" {payload['n_candidates']} distinct arrangements clustered at Hamming radius"
        f" {payload['radius']} into clusters of {sizes}; the largest"
        f" ({len(payload['members'])} members) voted"
    )
    if payload["n_dropped_other_depth"]:
        headline += f"; {payload['n_dropped_other_depth']} of another depth were left out"
    table = Table(title="per-layer decisions", header_style="bold")
    rows = layer_rows(payload)
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    return headline, table


def extrapolate_payload(result: Extrapolation) -> dict[str, Any]:
    """Everything `aira extrapolate` reports; ``model_config`` is `ModelConfig.to_dict`."""
    cfg = result.config
    return {
        "target": result.preset,
        "mode": result.mode,
        "source": " ".join(result.source),
        "source_depth": len(result.source),
        "arrangement": " ".join(result.layers),
        "depth": len(result.layers),
        "counts": {p: result.layers.count(p) for p in ("mA", "M", "Mb")},
        "n_params": result.n_params,
        "n_params_embedding": result.n_params_embedding,
        "n_params_non_embedding": result.n_params - result.n_params_embedding,
        "seq_len": result.seq_len,
        "flops_forward": result.flops,
        "flops_per_token": result.flops_per_token,
        "model_config": cfg.to_dict(),
    }


def extrapolate_table(payload: dict[str, Any]) -> Table:
    cfg = payload["model_config"]
    table = Table(
        title=f"{payload['target']} by {payload['mode']} of {payload['source_depth']} layers",
        header_style="bold",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", overflow="fold")
    rows = [
        ("arrangement", payload["arrangement"]),
        ("depth", f"{payload['depth']} primitives: "
         + ", ".join(f"{n} {p}" for p, n in payload["counts"].items() if n)),
        ("shape", f"d_model {cfg['d_model']}, {cfg['n_heads']} query / {cfg['n_kv_heads']} kv"
         f" heads, FFN {cfg['mlp_hidden']}, vocab {cfg['vocab_size']:,}, RoPE θ"
         f" {cfg['rope_theta']:,.0f}, tied embeddings {cfg['tie_embeddings']}"),
        ("parameters", f"{payload['n_params']:,} ({payload['n_params_embedding']:,} embedding,"
         f" {payload['n_params_non_embedding']:,} non-embedding)"),
        ("forward FLOPs", f"{payload['flops_forward']:,} per {payload['seq_len']}-token sequence"
         f" ({payload['flops_per_token']:,.0f} per token)"),
    ]  # fmt: skip
    for what, value in rows:
        table.add_row(what, value)
    return table
