"""What the CLI shows: archive records turned into rows, tables, panels and status reports.

Pure functions over frozen records (and a read-only `Archive` for the queries); `cli.py` prints.
"""

from __future__ import annotations

import csv
import io
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aira_async.liveness import daemon_alive
from aira_async.tasks import TASKS
from populations.records import NodeRecord
from store import Archive
from store.llm_calls import COST_GROUPS

if TYPE_CHECKING:
    from aira_async.daemon import RunSummary, Snapshot
    from primitives.evaluator import EvalResult


def _fmt_s(seconds: float) -> str:
    seconds = max(0.0, seconds)
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def node_rows(
    nodes: Iterable[NodeRecord], agent_names: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    names = agent_names or {}
    return [
        {
            "node": n.node_id,
            "agent": names.get(n.agent_id, str(n.agent_id)),
            "step": n.step,
            "parent": n.parent_id,
            "operator": n.operator.value,
            "status": n.status.value,
            "val": n.val_fitness,
            "test": n.test_fitness,
            "arrangement": n.proposal,
            "error": n.error,
        }
        for n in nodes
    ]


def leaderboard_rows(
    nodes: Iterable[NodeRecord], agent_names: dict[int, str]
) -> list[dict[str, Any]]:
    """Ranked rows for the end-of-run leaderboard (validation fitness steers; test reports)."""
    return [
        {
            "rank": rank,
            "val": n.val_fitness,
            "test": n.test_fitness,
            "arrangement": n.proposal,
            "agent": agent_names.get(n.agent_id, str(n.agent_id)),
            "operator": n.operator.value,
            "node": n.node_id,
        }
        for rank, n in enumerate(nodes, start=1)
    ]


def table(rows: Sequence[dict[str, Any]], *, title: str = "") -> Table:
    """A rich table of `rows` (floats to 4 digits, None as '-')."""
    tbl = Table(title=title or None, show_lines=False, header_style="bold")
    if not rows:
        tbl.add_column("(no rows)")
        return tbl
    for column in rows[0]:
        tbl.add_column(column, overflow="fold")
    for row in rows:
        tbl.add_row(
            *(
                _num(v) if isinstance(v, float) else ("-" if v is None else str(v))
                for v in row.values()
            )
        )
    return tbl


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def cost_rows(archive: Archive, *, by: str = "agent") -> list[dict[str, Any]]:
    """Rows for `aira query costs`: the LLM ledger (calls, failures, retries, tokens, $,
    latency) grouped by agent, island or model, most expensive first, then a total row."""
    if by not in COST_GROUPS:
        raise ValueError(f"--by: expected one of {', '.join(COST_GROUPS)}, got {by!r}")
    rows = archive.llm_costs(archive.get_run().run_id, by)
    if rows:
        total: dict[str, Any] = {by: "total"}
        for column in ("calls", "failed", "retries", "tokens_in", "tokens_out", "cost_usd"):
            total[column] = sum(r[column] for r in rows)
        n_calls = max(1, total["calls"])
        total["mean_latency_s"] = sum(r["mean_latency_s"] * r["calls"] for r in rows) / n_calls
        total["max_latency_s"] = max(r["max_latency_s"] for r in rows)
        rows.append(total)
    return rows


def query_rows(
    archive: Archive, kind: str, *, limit: int, node: int | None, agent: str | None
) -> list[dict[str, Any]]:
    """Rows for `aira query KIND`."""
    run = archive.get_run()
    agents = archive.agents(run.run_id)
    names = {a.agent_id: a.name for a in agents}
    if kind == "lineage":
        if node is None:
            raise ValueError("--node: lineage needs a node id")
        return node_rows(archive.lineage(node), names)
    agent_id = None
    if agent is not None:
        by_name = {a.name: a.agent_id for a in agents}
        if agent not in by_name:
            raise ValueError(f"--agent: unknown agent {agent!r} (known: {', '.join(by_name)})")
        agent_id = by_name[agent]
    if kind == "top":
        maximize = TASKS[run.config["task"]["name"]].maximize
        nodes = archive.top(run.run_id, limit, maximize=maximize)
        if agent_id is not None:
            nodes = [n for n in nodes if n.agent_id == agent_id]
        return node_rows(nodes, names)
    if kind == "nodes":
        nodes = archive.nodes(run.run_id, agent_id=agent_id)
        return node_rows(nodes[-limit:], names)
    raise ValueError(f"unknown query {kind!r} (known: top, nodes, lineage)")


def status_report(archive: Archive) -> dict[str, Any]:
    """Everything `aira status` shows, as plain data (also its --format json)."""
    run = archive.get_run()
    counts = archive.status_counts(run.run_id)
    top = archive.top(run.run_id, 1)
    agents = archive.agents(run.run_id)
    age = None if run.heartbeat_at is None else time.time() - run.heartbeat_at
    if run.status == "running":
        state = "running" if daemon_alive(run) else "dead"
    else:
        state = run.status.value
    per_agent = {a.name: 0 for a in agents}
    names = {a.agent_id: a.name for a in agents}
    for n in archive.nodes(run.run_id):
        per_agent[names.get(n.agent_id, str(n.agent_id))] += 1
    return {
        "run_id": run.run_id,
        "name": run.name,
        "state": state,
        "heartbeat_age_s": age,
        "spent_s": run.spent_s,
        "budget_s": run.budget_s,
        "budget_left_s": max(0.0, run.budget_s - run.spent_s),
        "max_nodes": run.max_nodes,
        "nodes": counts,
        "queued": counts.get("pending", 0) + counts.get("running", 0),
        "best": node_rows(top, names)[0] if top else None,
        "agents": per_agent,
    }


def status_text(report: dict[str, Any]) -> str:
    best = report["best"]
    lines = [
        f"run {report['run_id']} ({report['name']}): {report['state']}",
        f"budget   {_fmt_s(report['spent_s'])} spent of {_fmt_s(report['budget_s'])}"
        f" ({_fmt_s(report['budget_left_s'])} left)",
        "nodes    " + ", ".join(f"{k} {v}" for k, v in sorted(report["nodes"].items())),
        f"queue    {report['queued']} unfinished",
        "best     "
        + (f"{_num(best['val'])} (node {best['node']}) {best['arrangement']}" if best else "-"),
        "agents   " + ", ".join(f"{k} ({v} nodes)" for k, v in report["agents"].items()),
    ]
    if report["state"] == "dead":
        lines.append("the daemon is not running: continue with `aira resume --db ...`")
    return "\n".join(lines)


def progress_line(s: Snapshot) -> str:
    best = "-" if s.best is None else f"{_num(s.best.val_fitness)} {s.best.proposal}"
    return (
        f"[{_fmt_s(s.spent_s)}/{_fmt_s(s.budget_s)}] nodes {s.n_finished}/{s.n_nodes}"
        f" failed {s.n_failed} reused {s.n_reused} | queue {s.n_queued} running"
        f" {s.n_running}/{s.n_slots} | best {best}" + (" | stopping" if s.stopping else "")
    )


def progress_panel(s: Snapshot) -> Panel:
    head = Text(progress_line(s))
    agents = Table.grid(padding=(0, 2))
    for name, step in s.agents:
        agents.add_row(name, f"step {step}")
    return Panel(Group(head, agents), title=f"aira run {s.run_id}", border_style="cyan")


def summary_text(summary: RunSummary) -> str:
    best = summary.best
    return (
        f"run {summary.run_id} stopped ({summary.stop_reason}) after"
        f" {_fmt_s(summary.spent_s)} of {_fmt_s(summary.budget_s)}:"
        f" {summary.n_finished} of {summary.n_nodes} nodes finished; best "
        + ("-" if best is None else f"{_num(best.val_fitness)} {best.proposal}")
    )


def eval_result_dict(result: EvalResult) -> dict[str, Any]:
    return {
        "arrangement": " ".join(result.job.layers),
        "task": result.job.task,
        "fidelity": result.job.fidelity,
        "split": result.job.split,
        "seed": result.job.seed,
        "status": result.status,
        "score": result.score,
        "per_task": result.per_task,
        "wall_s": result.wall_s,
        "device": result.device,
        "peak_mem_mb": result.peak_mem_mb,
        "n_params": result.n_params,
        "error": result.error,
        "evaluator_version": result.evaluator_version,
    }


def seed_summary_table(payloads: list[dict[str, Any]]) -> Table:
    """Each arrangement's score over its seeds: mean, sample std, min, max (ok jobs only)."""
    tbl = Table(title="over seeds", header_style="bold")
    for column in ("arrangement", "seeds", "mean", "std", "min", "max"):
        tbl.add_column(column)
    by_arrangement: dict[str, list[dict[str, Any]]] = {}
    for payload in payloads:
        by_arrangement.setdefault(payload["arrangement"], []).append(payload)
    for arrangement, runs in by_arrangement.items():
        scores = [r["score"] for r in runs if r["status"] == "ok" and r["score"] is not None]
        seeds = ",".join(str(r["seed"]) for r in runs)
        if not scores:
            tbl.add_row(arrangement, seeds, "-", "-", "-", "-")
            continue
        std = statistics.stdev(scores) if len(scores) > 1 else None
        tbl.add_row(
            arrangement,
            seeds,
            _num(statistics.mean(scores)),
            _num(std),
            _num(min(scores)),
            _num(max(scores)),
        )
    return tbl


def eval_result_table(payload: dict[str, Any]) -> Table:
    tbl = Table(
        title=f"{payload['arrangement']} - {payload['task']} ({payload['fidelity']},"
        f" {payload['split']}, seed {payload['seed']})",
        header_style="bold",
    )
    for column in ("task", "macro acc", "token acc", "final loss"):
        tbl.add_column(column)
    for name, metrics in payload["per_task"].items():
        tbl.add_row(
            name,
            _num(metrics.get("macro_acc")),
            _num(metrics.get("token_acc")),
            _num(metrics.get("final_loss")),
        )
    tbl.add_section()
    tbl.add_row("mean", _num(payload["score"]), "", "")
    tbl.caption = (
        f"status {payload['status']}"
        + (f" ({payload['error']})" if payload["error"] else "")
        + f" | {payload['n_params']:,} params | {payload['wall_s']:.1f}s on {payload['device']}"
    )
    return tbl
