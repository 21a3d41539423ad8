"""LLM agents of both SDKs in the daemon, against the local test server: faults, costs, replay.

- a synthetic-task run with five LLM agents (OpenAI, Anthropic, OpenAI-compatible; greedy, MCTS
  and one-shot) through a burst of 429s, a server restart and malformed/truncated bodies;
- SIGKILL mid-run and `aira resume`: the server's per-key counters show no stored reply is paid
  for again;
- one small MAD `smoke` run (real training) with both SDKs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from aira_async import views
from aira_async.config import load_population
from aira_async.daemon import Daemon
from populations.records import NodeStatus, Operator
from store import Archive
from tests.aira_async.llm_server import ArrangementScript, ScriptedLLMServer, ServerThread

pytestmark = pytest.mark.slow

KEYS = {"AIRA_TEST_OPENAI_KEY": "sk-test", "AIRA_TEST_ANTHROPIC_KEY": "sk-ant-test"}

POPULATION = """\
[run]
name = "llm"
seed = 0
budget = "10m"
shutdown_grace_s = 10
heartbeat_s = 0.2
max_nodes = {max_nodes}

[task]
name = "{task}"
fidelity = "{fidelity}"
seed = 3
length = {length}
alphabet = {alphabet}
test_eval = false
latency_s = {latency_s}

[evaluation]
backend = "{backend}"
workers = 2
timeout_s = 300

[llm]
timeout_s = 5
deadline_s = 60
max_retries = 8
backoff_s = 0.05
backoff_max_s = 0.5
max_retry_after_s = 1
concurrency = {{ openai = 3, anthropic = 2 }}
[llm.prices.gpt-test]
input_per_mtok = 2.0
output_per_mtok = 8.0
[llm.prices.claude-test]
input_per_mtok = 3.0
output_per_mtok = 15.0

[[islands]]
name = "a"

[[islands]]
name = "b"
{agents}
"""

AGENT = """
[[agents]]
name = "{name}"
island = "{island}"
proposer = "llm"
provider = "{provider}"
model = "{model}"
base_url = "{base_url}"
api_key_env = "{key_env}"
policy = "{policy}"
temperature = 0.8
analyze = {analyze}
[agents.policy_params]
{params}
"""


def write_population(
    path: Path,
    server: ScriptedLLMServer,
    *,
    agents: list[tuple[str, str, str, str]],
    max_nodes: int,
    task: str = "synthetic",
    length: int = 8,
    alphabet: tuple[str, ...] = ("mA", "M", "Mb"),
    backend: str = "inline",
    latency_s: float = 0.0,
) -> Path:
    """`agents`: (name, provider, policy, policy params as TOML lines)."""
    blocks = []
    for i, (name, provider, policy, params) in enumerate(agents):
        anthropic = provider == "anthropic"
        blocks.append(
            AGENT.format(
                name=name,
                island="ab"[i % 2],
                provider=provider,
                model="claude-test" if anthropic else "gpt-test",
                base_url=server.anthropic_url if anthropic else server.openai_url,
                key_env="AIRA_TEST_ANTHROPIC_KEY" if anthropic else "AIRA_TEST_OPENAI_KEY",
                policy=policy,
                analyze="true" if i == 1 else "false",
                params=params,
            )
        )
    path.write_text(
        POPULATION.format(
            max_nodes=max_nodes,
            task=task,
            fidelity="smoke" if task == "mad" else "exact",
            length=length,
            alphabet="[" + ", ".join(f'"{a}"' for a in alphabet) + "]",
            latency_s=latency_s,
            backend=backend,
            agents="".join(blocks),
        )
    )
    return path


FIVE_AGENTS = [
    ("gpt-greedy", "openai", "greedy", "num_drafts = 3\ndebug_prob = 1.0"),
    ("claude-greedy", "anthropic", "greedy", "num_drafts = 3\ndebug_prob = 1.0"),
    ("gpt-mcts", "openai", "mcts", "num_children = 2"),
    ("claude-one-shot", "anthropic", "greedy", "num_drafts = 1\nstep_limit = 1"),
    ("local-greedy", "openai-compatible", "greedy", "num_drafts = 2"),
]


async def _chaos(server: ScriptedLLMServer, done: asyncio.Event) -> None:
    """A burst of 429s at once; a restart after 10 replies; malformed bodies after 20."""
    server.inject("429", 6, retry_after_s=0.2)
    for threshold, action in ((10, "restart"), (20, "bodies")):
        while server.outcomes["ok"] < threshold and not done.is_set():
            await asyncio.sleep(0.02)
        if done.is_set():
            return
        if action == "restart":
            await server.restart(gap_s=0.3)
        else:
            for fault in ("malformed", "truncated", "malformed", "drop", "500"):
                server.inject(fault)


async def test_llm_agents_survive_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    server = ScriptedLLMServer(ArrangementScript(length=8, alphabet=("mA", "M", "Mb")))
    await server.start()
    db = tmp_path / "llm.db"
    done = asyncio.Event()
    try:
        population = write_population(tmp_path / "p.toml", server, agents=FIVE_AGENTS,
                                      max_nodes=36)  # fmt: skip
        daemon = Daemon(load_population(population), str(db), install_signals=False)
        async with asyncio.TaskGroup() as group:
            chaos = group.create_task(_chaos(server, done))
            summary = await daemon.run()
            done.set()
            await chaos
    finally:
        await server.stop()
    assert summary.stop_reason in ("max_nodes", "agents finished")
    # every fault happened, and the run finished anyway
    assert server.outcomes["429"] == 6 and server.outcomes["restart"] == 1
    assert server.outcomes["malformed"] == 2 and server.outcomes["truncated"] == 1

    archive = Archive.open(str(db), read_only=True)
    try:
        run = archive.get_run()
        nodes = archive.nodes(run.run_id)
        calls = archive.llm_calls(run.run_id)
        agents = {a.agent_id: a for a in archive.agents(run.run_id)}
        costs = views.cost_rows(archive, by="agent")
        by_island = views.cost_rows(archive, by="island")
        analyses = archive.events(run.run_id, kind="analysis")
    finally:
        archive.close()
    assert all(n.status.finished for n in nodes) and len(nodes) >= 20
    assert {agents[n.agent_id].name for n in nodes} == {a[0] for a in FIVE_AGENTS}
    kinds = {a.kind for a in agents.values()}
    assert kinds >= {"llm:openai/gpt-test", "llm:anthropic/claude-test"}
    good = [n for n in nodes if n.is_good]
    assert good and all(n.plan and n.tokens_in > 0 and n.cost_usd > 0 for n in good)
    assert all(len(n.proposal.split()) == 8 for n in good)
    # bad replies became buggy nodes with their reason, and Debug repaired some of them
    buggy = [n for n in nodes if n.error and "unparsable reply" in n.error]
    assert buggy, "the script's malformed replies should give buggy nodes"
    assert any(n.operator is Operator.DEBUG and n.status is NodeStatus.COMPLETE for n in nodes)
    # each fault left a trace: retries on the stored calls; no stored call paid twice
    assert sum(c.retries for c in calls) >= 6 + 5
    assert all(c.status == "ok" for c in calls)
    assert max(server.served.values()) == 1 and len(server.served) == len(calls)
    # the ledger: per agent and island, and the nodes' costs add up to the proposal calls
    assert {r["agent"] for r in costs} == {a[0] for a in FIVE_AGENTS} | {"total"}
    total = costs[-1]
    assert total["calls"] == len(calls) and total["retries"] >= 11
    assert total["cost_usd"] == pytest.approx(sum(c.cost_usd for c in calls))
    assert {r["island"] for r in by_island} == {"a", "b", "total"}
    proposal_cost = sum(c.cost_usd for c in calls if c.operator != "analyze")
    assert sum(n.cost_usd for n in nodes) == pytest.approx(proposal_cost)
    # Analyze (claude-greedy) is stored as events; it never sets the fitness
    assert analyses and all(e.payload["llm_metric"] == 0.99 for e in analyses)
    assert all(n.val_fitness != 0.99 for n in good)


def _stored_keys(db: Path) -> set[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return {row[0] for row in con.execute("SELECT request_key FROM llm_calls")}
    except sqlite3.Error:
        return set()


def _aira(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "aira_async", *args, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_sigkill_and_resume_pay_no_prompt_twice(tmp_path: Path) -> None:
    env = {**os.environ, **KEYS}
    server = ScriptedLLMServer(ArrangementScript(length=8, alphabet=("mA", "M", "Mb")),
                               latency_s=0.03)  # fmt: skip
    thread = ServerThread(server)
    with thread as srv:
        population = write_population(tmp_path / "p.toml", srv, agents=FIVE_AGENTS[:4],
                                      max_nodes=30)  # fmt: skip
        db = tmp_path / "crash.db"
        proc = _aira("run", "--population", str(population), "--db", str(db), env=env)
        deadline = time.monotonic() + 60
        # (stored, received, served) at each kill; a request received before a kill may be
        # served after it, to a dead client: it failed without a stored reply
        at_kill: list[tuple[set[str], Counter[str], Counter[str]]] = []
        for kill_after in (8, 20):
            while len(_stored_keys(db)) < kill_after:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert proc.stderr is not None
            proc.stderr.close()
            received_then, served_then, _ = thread.snapshot()
            at_kill.append((_stored_keys(db), received_then, served_then))
            proc = _aira("resume", "--db", str(db), env=env)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()
        _, served, _ = thread.snapshot()
    final = _stored_keys(db)
    lost = {k for stored, received_then, _ in at_kill for k in received_then if k not in stored}
    assert final <= set(served) and set(served) - final <= lost  # paid and unstored: in flight
    for stored, _, served_then in at_kill:
        assert stored and stored <= final
        # a reply stored before a kill is replayed after it, never requested again
        assert all(served[k] == served_then[k] >= 1 for k in stored)
    # only a reply in flight at a kill (served, not yet committed) may be paid a second time
    twice = [k for k, n in served.items() if n > 1]
    assert len(twice) <= 2 * 3 and all(served[k] == 2 for k in twice)
    assert set(twice) <= lost
    archive = Archive.open(str(db), read_only=True)
    try:
        run = archive.get_run()
        nodes = archive.nodes(run.run_id)
        resumes = archive.events(run.run_id, kind="resume")
    finally:
        archive.close()
    assert len(resumes) == 2 and all(n.status.finished for n in nodes)
    assert len(nodes) == 30 and sum(n.tokens_in > 0 for n in nodes) >= 20


async def test_mad_smoke_with_both_sdks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    server = ScriptedLLMServer(ArrangementScript(length=4, alphabet=("mA", "M"), bad_every=10**9))
    await server.start()
    try:
        agents = [  # four agents, two per SDK, one draft each
            ("gpt-greedy", "openai", "greedy", "num_drafts = 1"),
            ("gpt-mcts", "openai", "mcts", "num_children = 1"),
            ("claude-greedy", "anthropic", "greedy", "num_drafts = 1"),
            ("claude-mcts", "anthropic", "mcts", "num_children = 1"),
        ]
        population = write_population(
            tmp_path / "p.toml", server, agents=agents, max_nodes=4, task="mad", length=4,
            alphabet=("mA", "M"), backend="process", latency_s=0.0,
        )  # fmt: skip
        db = tmp_path / "mad.db"
        summary = await Daemon(load_population(population), str(db), install_signals=False).run()
    finally:
        await server.stop()
    assert summary.n_nodes == 4 and summary.best is not None
    archive = Archive.open(str(db), read_only=True)
    try:
        nodes = archive.nodes(archive.get_run().run_id)
    finally:
        archive.close()
    assert len(nodes) == 4 and all(n.is_good for n in nodes)
    assert len({n.agent_id for n in nodes}) == 4  # every agent, both SDKs, trained a model
    assert all(0.0 <= (n.val_fitness or 0.0) <= 1.0 and n.plan and n.cost_usd > 0 for n in nodes)
    assert sum(server.served.values()) == 4 + 1  # four proposals, one Analyze call (gpt-mcts)
