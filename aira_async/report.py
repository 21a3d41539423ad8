"""`aira report`: one self-contained HTML file describing a run (inline SVG, no external file).

Contents: a summary; the leaderboard; plots of the best-so-far over time per agent, the per-layer
primitive frequency of the top arrangements, the pairwise Hamming distances between distinct
arrangements, each agent's tree size (own nodes and imported migrants), the migration flows
between islands; the effect of migration (children of migrants against other children);
diversity by island and by agent; the collapse monitor's events.

Reads the archive only (open it read-only); pure formatting otherwise.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aira_async import svg, views
from aira_async.tasks import TASKS
from populations import diversity
from populations.records import NodeRecord
from store import Archive

_TOP = 50
_MAX_DISTINCT = 300  # the Hamming histogram is O(n²): measure at most this many arrangements

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1340px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots svg { border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; font-family: monospace; }
.note { color: #666; font-size: 12px; }
"""


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">(none)</p>'
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = []
    for row in rows:
        cells = []
        for value in row.values():
            if isinstance(value, float):
                cells.append(f"<td>{value:.4g}</td>")
            elif isinstance(value, str):
                cells.append(f'<td class="text">{html.escape(value)}</td>')
            else:
                cells.append(f"<td>{'-' if value is None else html.escape(str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def best_so_far(
    nodes: Sequence[NodeRecord], names: dict[int, str], *, start: float, maximize: bool
) -> dict[str, list[tuple[float, float]]]:
    """Per agent, (seconds since `start`, best validation fitness so far) at each improvement."""
    series: dict[str, list[tuple[float, float]]] = {}
    best: dict[str, float] = {}
    done = [n for n in nodes if n.is_good and n.finished_at is not None]
    for node in sorted(done, key=lambda n: (n.finished_at or 0.0, n.node_id)):
        assert node.val_fitness is not None and node.finished_at is not None
        name = names.get(node.agent_id, str(node.agent_id))
        old = best.get(name)
        if old is None or (node.val_fitness > old if maximize else node.val_fitness < old):
            best[name] = node.val_fitness
            series.setdefault(name, []).append((node.finished_at - start, node.val_fitness))
    return series


def diversity_rows(
    summaries: dict[str, diversity.DiversitySummary], by: str
) -> list[dict[str, Any]]:
    """One row per group (what `aira query diversity` prints as well)."""
    return [{by: name, **asdict(summary)} for name, summary in summaries.items()]


def effect_rows(nodes: Sequence[NodeRecord], *, maximize: bool) -> list[dict[str, Any]]:
    """Children of migrants against other children (`diversity.migration_effect`)."""
    rows = []
    labels = ("children of migrants", "other children")
    for label, effect in zip(
        labels, diversity.migration_effect(nodes, maximize=maximize), strict=True
    ):
        rows.append(
            {
                "kind": label,
                "children": effect.n_children,
                "good": effect.n_good,
                "mean val": effect.mean_fitness,
                "better than parent": effect.n_better_than_parent,
                "improve rate": effect.improve_rate,
            }
        )
    return rows


def diversity_query(archive: Archive, by: str = "agent") -> list[dict[str, Any]]:
    """Rows of `aira query diversity --by agent|island|run` for the archive's latest run."""
    if by not in ("agent", "island", "run"):
        raise ValueError(f"--by: diversity groups by agent, island or run, not {by!r}")
    run = archive.get_run()
    maximize = TASKS[run.config["task"]["name"]].maximize
    agents = archive.agents(run.run_id)
    group = {a.agent_id: (a.name if by == "agent" else a.island) for a in agents}
    nodes = archive.nodes(run.run_id)
    if by == "run":
        return diversity_rows({run.name: diversity.summarize(nodes, maximize=maximize)}, "run")
    summaries = diversity.summarize_by(nodes, lambda n: group.get(n.agent_id), maximize=maximize)
    return diversity_rows(summaries, by)


def build_report(archive: Archive) -> str:
    """The report of the archive's latest run, as one HTML document."""
    run = archive.get_run()
    maximize = TASKS[run.config["task"]["name"]].maximize
    agents = archive.agents(run.run_id)
    names = {a.agent_id: a.name for a in agents}
    island_of = {a.agent_id: a.island for a in agents}
    islands = [i.name for i in archive.islands(run.run_id)]
    nodes = archive.nodes(run.run_id)
    top = archive.top(run.run_id, _TOP, maximize=maximize)
    migrations = archive.migrations(run.run_id)
    alphabet = list(run.config["task"].get("alphabet", ()))

    plots = [
        svg.line_chart(
            "Best validation fitness so far, per agent",
            best_so_far(nodes, names, start=run.created_at, maximize=maximize),
            x_label="seconds since the run started",
            y_label="best val fitness",
        )
    ]
    freqs = diversity.layer_frequencies(top)
    seen = {p for f in freqs for p in f}
    primitives = [p for p in alphabet if p in seen] + sorted(seen - set(alphabet))
    plots.append(
        svg.heatmap(
            f"Primitive frequency per layer, top {len(top)} arrangements",
            primitives,
            [str(i + 1) for i in range(len(freqs))],
            [[f.get(p, 0.0) for f in freqs] for p in primitives],
            x_label="layer",
            y_label="primitive",
        )
    )
    distinct = diversity.unique_arrangements(nodes)[:_MAX_DISTINCT]
    distances = Counter(
        diversity.hamming(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]
    )
    length = len(distinct[0]) if distinct else 0
    plots.append(
        svg.bar_chart(
            f"Pairwise Hamming distances, {len(distinct)} distinct arrangements",
            [str(d) for d in range(length + 1)],
            {"pairs": [float(distances.get(d, 0)) for d in range(length + 1)]},
            x_label="Hamming distance",
            y_label="pairs",
        )
    )
    received = Counter(m.target_island for m in migrations)
    own = Counter(n.agent_id for n in nodes)
    plots.append(
        svg.bar_chart(
            "Tree size per agent",
            [a.name for a in agents],
            {
                "own nodes": [float(own.get(a.agent_id, 0)) for a in agents],
                "imported migrants": [float(received.get(a.island or "", 0)) for a in agents],
            },
            x_label="agent",
            y_label="nodes",
        )
    )
    flows = Counter((m.source_island, m.target_island) for m in migrations)
    plots.append(
        svg.heatmap(
            f"Migration flows ({len(migrations)} migrants)",
            islands,
            islands,
            [[float(flows.get((s, t), 0)) for t in islands] for s in islands],
            x_label="to island",
            y_label="from island",
            fmt="{:.0f}",
        )
    )
    effects = effect_rows(nodes, maximize=maximize)
    plots.append(
        svg.bar_chart(
            "Effect of migration: children of migrants vs other children",
            ["mean val fitness", "improve rate"],
            {
                str(row["kind"]): [row["mean val"] or 0.0, row["improve rate"] or 0.0]
                for row in effects
            },
            x_label="",
            y_label="value",
        )
    )
    by_island = diversity.summarize_by(
        nodes, lambda n: island_of.get(n.agent_id), maximize=maximize
    )
    by_agent = diversity.summarize_by(nodes, lambda n: names.get(n.agent_id), maximize=maximize)
    collapses = [
        {"at": time.strftime("%H:%M:%S", time.localtime(e.at)), **{
            k: (", ".join(map(str, v)) if isinstance(v, list) else v)
            for k, v in e.payload.items()
        }}
        for e in archive.events(run.run_id, kind="collapse")
    ]  # fmt: skip
    best = top[0] if top else None
    summary = (
        f"run {run.run_id} <b>{html.escape(run.name)}</b> ({run.status.value}):"
        f" {len(nodes)} nodes by {len(agents)} agents on {len(islands)} islands,"
        f" {len(migrations)} migrations, {run.spent_s:.0f} s spent; best "
        + (
            "-"
            if best is None
            else f"{best.val_fitness:.4f} <code>{html.escape(best.proposal)}</code>"
        )
    )
    sections = [
        f"<h1>aira report: {html.escape(run.name)}</h1><p>{summary}</p>",
        "<h2>Plots</h2>",
        f'<div class="plots">{"".join(plots)}</div>',
        "<h2>Leaderboard</h2>",
        _table(views.leaderboard_rows(top[:15], names)),
        "<h2>Effect of migration</h2>",
        '<p class="note">A child of a migrant is a node whose parent is another agent\'s node'
        " (a migrant it imported); other children improve or debug the agent's own nodes.</p>",
        _table(effects),
        "<h2>Diversity by island</h2>",
        _table(diversity_rows(by_island, "island")),
        "<h2>Diversity by agent</h2>",
        _table(diversity_rows(by_agent, "agent")),
        "<h2>Collapse monitor</h2>",
        _table(collapses),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>aira report: {html.escape(run.name)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def write_report(db: str, out: str | Path) -> Path:
    """Write the report of the archive at `db` (opened read-only) to `out`."""
    archive = Archive.open(db, read_only=True)
    try:
        text = build_report(archive)
    finally:
        archive.close()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
