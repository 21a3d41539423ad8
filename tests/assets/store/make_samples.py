"""Regenerate the sample archive of each released schema revision.

    .venv/bin/python tests/assets/store/make_samples.py

Writes ``schema_<revision>.db`` beside this file: a small SQLite archive created at exactly that
revision, holding one run, two agents on one island, a few nodes of every status, their
evaluations and policy statistics, and an event. Rows are inserted with plain SQL written against
that revision's tables (never through `Archive`, whose code follows head), so this script keeps
producing the same file after the schema moves on. `tests/store/test_samples.py` opens and
upgrades every file it finds. When a revision is released, add a function for it below and keep
the older ones unchanged.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, to import `store`

from store.engine import make_engine  # noqa: E402
from store.schema import create_schema  # noqa: E402

T0 = 1_700_000_000.0
CONFIG = {"run": {"name": "sample", "seed": 7}, "task": {"name": "mad", "fidelity": "smoke"}}


def _rows_0001(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO runs (id, name, created_at, config, config_hash, seed, budget_s, spent_s,"
        " max_nodes, status, heartbeat_at, pid) VALUES (1, 'sample', ?, ?, 'cfg0001', 7, 3600.0,"
        " 120.5, 50, 'stopped', ?, NULL)",
        (T0, json.dumps(CONFIG), T0 + 120.5),
    )
    db.execute("INSERT INTO islands (id, run_id, name) VALUES (1, 1, 'north')")
    db.executemany(
        "INSERT INTO agents (id, run_id, island_id, name, kind, policy, config)"
        " VALUES (?, 1, 1, ?, ?, ?, ?)",
        [
            (1, "greedy-0", "random", "greedy", json.dumps({"num_drafts": 5})),
            (2, "mcts-0", "evolution", "mcts", json.dumps({"c": 0.25})),
        ],
    )
    evaluations = [
        (1, "mA M mA M", "ok", 0.61, None, 2.0),
        (2, "M M M M", "ok", 0.42, None, 1.5),
        (3, "mA mA mA mA", "timeout", None, "timed out after 30 s", 30.0),
    ]
    db.executemany(
        "INSERT INTO evaluations (id, proposal_key, task, fidelity, seed, split, status, score,"
        " metrics, error, device, duration_s, peak_mem_mb, evaluator_version, created_at)"
        " VALUES (?, ?, 'mad', 'smoke', 0, 'validation', ?, ?, '{}', ?, 'cpu', ?, 64.0, 'v1', ?)",
        [(i, k, status, score, error, d, T0 + i) for i, k, status, score, error, d in evaluations],
    )
    # id, agent, parent, step, slot, operator, proposal, status, val, error, eval id, gpu_s
    nodes = [
        (1, 1, None, 0, 0, "draft", "mA M mA M", "complete", 0.61, None, 1, 2.0),
        (2, 1, None, 0, 1, "draft", "mA X", "failed", None, "unknown primitive X", None, 0.0),
        (3, 1, 1, 1, 0, "improve", "mA M mA M", "complete", 0.61, None, 1, 0.0),
        (4, 2, None, 0, 0, "draft", "M M M M", "complete", 0.42, None, 2, 1.5),
        (5, 2, 4, 1, 0, "improve", "mA mA mA mA", "failed", None, "timeout", 3, 30.0),
        (6, 2, 4, 1, 1, "improve", "mA M M M", "running", None, None, None, 0.0),
    ]
    db.executemany(
        "INSERT INTO nodes (id, run_id, agent_id, parent_id, step, slot, operator, proposal,"
        " proposal_key, plan, status, val_fitness, test_fitness, error, created_at, started_at,"
        " finished_at, heartbeat_at, tokens_in, tokens_out, cost_usd, gpu_s, val_eval_id,"
        " test_eval_id, evaluator_version, config_hash, seed) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?,"
        " 'a plan', ?, ?, NULL, ?, ?, ?, ?, ?, 10, 5, 0.001, ?, ?, NULL, 'v1', 'cfg0001', 7)",
        [_node_params(*node) for node in nodes],
    )
    db.executemany(
        "INSERT INTO policy_stats (agent_id, node_key, visits, value_sum) VALUES (2, ?, ?, ?)",
        [(0, 2, 0.42), (4, 2, 0.42), (5, 1, 0.0)],
    )
    db.execute(
        "INSERT INTO events (id, run_id, at, kind, agent_id, node_id, payload)"
        " VALUES (1, 1, ?, 'migrate', 2, 4, ?)",
        (T0 + 60.0, json.dumps({"to": "north", "nodes": [4]})),
    )


def _node_params(
    i: int, agent: int, parent: int | None, step: int, slot: int, op: str, text: str,
    status: str, val: float | None, error: str | None, eval_id: int | None, gpu_s: float,
) -> tuple[object, ...]:  # fmt: skip
    finished_at = None if status == "running" else T0 + i + 0.5
    return (i, agent, parent, step, slot, op, text, text, status, val, error,
            T0 + i, T0 + i, finished_at, T0 + i, gpu_s, eval_id)  # fmt: skip


def _rows_0002(db: sqlite3.Connection) -> None:
    _rows_0001(db)
    db.execute("INSERT INTO islands (id, run_id, name) VALUES (2, 1, 'south')")
    db.execute(
        "INSERT INTO llm_calls (id, run_id, agent_id, node_id, request_key, prompt_hash,"
        " provider, model, operator, request, reply, response, status, error, tokens_in,"
        " tokens_out, cost_usd, latency_s, retries, created_at) VALUES (1, 1, 1, 1, 'req0001',"
        " 'prompt0001', 'openai', 'gpt-sample', 'draft', ?, 'Plan: alternate.\\nmA M mA M',"
        " '{}', 'ok', NULL, 10, 5, 0.001, 1.25, 0, ?)",
        (json.dumps({"messages": [{"role": "user", "content": "Draft."}]}), T0 + 0.5),
    )
    db.execute(
        "INSERT INTO migrations (id, run_id, node_id, source_island_id, target_island_id, at,"
        " policy) VALUES (1, 1, 4, 1, 2, ?, 'ring top-1')",
        (T0 + 60.0,),
    )


SAMPLES: dict[str, Callable[[sqlite3.Connection], None]] = {
    "0001_initial": _rows_0001,
    "0002_llm_calls_migrations": _rows_0002,
}


def make(revision: str, path: Path) -> None:
    """Create `path` at `revision` and fill it; the result is one self-contained file."""
    path.unlink(missing_ok=True)
    engine = make_engine(path)
    try:
        create_schema(engine, revision)
    finally:
        engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        SAMPLES[revision](db)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=DELETE")  # no -wal file beside the sample
        db.execute("VACUUM")
    finally:
        db.close()


def main() -> None:
    for revision in SAMPLES:
        path = HERE / f"schema_{revision}.db"
        make(revision, path)
        print(f"wrote {path.relative_to(HERE.parents[2])}")


if __name__ == "__main__":
    main()
