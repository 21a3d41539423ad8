"""`aira` with LLM agents: a missing API key is one error line before anything is written, the
paper preset loads, and `aira query costs` reads the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aira_async import views
from aira_async.config import load_population
from aira_async.daemon import build_agent
from store import Archive, LLMCallRecord
from tests.conftest import write_population

PRESET = Path(__file__).resolve().parents[2] / "populations/presets/paper-compose.toml"


def aira(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aira_async", *args], capture_output=True, text=True, timeout=120,
        env=env,
    )  # fmt: skip


def test_missing_key_is_refused_before_writing(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(
        path.read_text().replace(
            'proposer = "random"',
            'proposer = "llm"\nprovider = "anthropic"\nmodel = "claude-test"\n'
            'api_key_env = "AIRA_NO_SUCH_KEY"',
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "AIRA_NO_SUCH_KEY"}
    db = tmp_path / "run.db"
    result = aira("run", "--population", str(path), "--db", str(db), env=env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "AIRA_NO_SUCH_KEY" in lines[0]
    assert not db.exists()


def test_paper_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    config = load_population(PRESET)
    agents = config.expanded_agents()
    assert len(agents) == 11 and config.run.budget_s == 24 * 3600
    assert {a.provider for a in agents} == {"openai", "anthropic", "openai-compatible"}
    assert {a.policy for a in agents} == {"greedy", "mcts"}
    assert any(a.policy_params.get("step_limit") == 1 for a in agents)  # one-shot
    kinds = {build_agent(a, config)[0].kind for a in agents}
    assert "llm:anthropic/claude-opus-4-5" in kinds


def test_query_costs(tmp_path: Path) -> None:
    db = tmp_path / "costs.db"
    with Archive.create(str(db)) as archive:
        run = archive.create_run("r", {"task": {"name": "synthetic"}}, "h", 0, 60.0)
        for name, island in (("gpt", "a"), ("claude", "b")):
            agent = archive.add_agent(run.run_id, name, island, "llm", "greedy", {})
            for i in range(2):
                record = LLMCallRecord(
                    run_id=run.run_id, agent_id=agent.agent_id, request_key=f"{name}{i}",
                    prompt_hash="p", provider="openai", model=name, operator="draft",
                    status="ok" if i == 0 else "error", reply="x", tokens_in=100,
                    tokens_out=10, cost_usd=0.5 if name == "gpt" else 0.25, latency_s=1.0 + i,
                    retries=i * 3,
                )  # fmt: skip
                stored = archive.put_llm_call(record)
                again = archive.put_llm_call(record)  # the stored call wins
                assert again.call_id == stored.call_id
    result = aira("query", "costs", "--db", str(db), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["agent"] for r in rows] == ["gpt", "claude", "total"]
    assert rows[0]["cost_usd"] == 1.0 and rows[0]["failed"] == 1 and rows[0]["retries"] == 3
    assert rows[-1]["calls"] == 4 and rows[-1]["tokens_in"] == 400
    assert rows[-1]["mean_latency_s"] == 1.5 and rows[-1]["max_latency_s"] == 2.0
    with Archive.open(str(db), read_only=True) as reader:
        by_island = views.cost_rows(reader, by="island")
        assert [r["island"] for r in by_island] == ["a", "b", "total"]
        with pytest.raises(ValueError, match="--by"):
            views.cost_rows(reader, by="planet")
