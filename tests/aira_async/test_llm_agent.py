"""`LLMAgent`: replies stored before use and replayed, buggy proposals, the ledger and the $ cap,
API keys and the `[llm]` config."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aira_async.agents.base import AgentContext
from aira_async.agents.llm import (
    CostCapReached,
    Ledger,
    LLMAgent,
    LLMRuntime,
    LLMSettings,
    MemoryCalls,
    OpenAIClient,
    PriceTable,
    make_llm_agent,
)
from aira_async.config import AgentConfig, DaemonConfig, LLMConfig
from aira_async.daemon import build_agent
from aira_async.errors import ConfigError
from populations.records import Action, EvalKey, EvalOutcome, EvalStatus, Operator, Split
from populations.tree import SearchTree
from store import LLMCallRecord
from tests.aira_async.llm_server import ArrangementScript, ScriptedLLMServer

ALPHABET = ("mA", "M", "Mb")
DRAFT = Action(operator=Operator.DRAFT, parent_id=None)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedLLMServer]:
    srv = ScriptedLLMServer(ArrangementScript(length=6, alphabet=ALPHABET, bad_every=10**9))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class RecordingCalls(MemoryCalls):
    """A cache that remembers the order of gets and puts (stored before use)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    async def put(self, record: LLMCallRecord) -> LLMCallRecord:
        self.log.append(f"put:{record.request_key[:8]}")
        return await super().put(record)


def _context(runtime: LLMRuntime, *, step: int = 1, slot: int = 0) -> AgentContext:
    return AgentContext(
        tree=SearchTree(), rng=random.Random(0), task_description="# Task: test",
        alphabet=ALPHABET, length=6, run_id=1, step=step, slot=slot, llm=runtime,
    )  # fmt: skip


def _agent(server: ScriptedLLMServer, **settings: object) -> LLMAgent:
    config = dict(provider="openai", model="m-1", max_tokens=200, analyze=True)
    config.update(settings)
    return LLMAgent(
        "a",
        OpenAIClient(api_key="t", base_url=server.openai_url),
        LLMSettings(**config),  # type: ignore[arg-type]
    )


async def test_reply_is_stored_before_use_then_replayed(server: ScriptedLLMServer) -> None:
    calls = RecordingCalls()
    prices = {"m-1": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    runtime = LLMRuntime(LLMConfig(prices=prices), run_id=1, calls=calls)
    agent = _agent(server)
    try:
        first = await agent.propose(DRAFT, _context(runtime))
        assert first.error is None and len(first.text.split()) == 6 and first.plan
        assert first.tokens_in > 0 and first.cost_usd > 0
        (record,) = calls.records.values()
        assert record.reply is not None and record.retries == 0 and record.cost_usd > 0
        again = await agent.propose(DRAFT, _context(runtime))
        assert again == first and runtime.n_replayed == 1 and runtime.n_paid == 1
        assert sum(server.served.values()) == 1  # the replay paid nothing
        other = await agent.propose(DRAFT, _context(runtime, slot=1))  # another place: new key
        assert sum(server.served.values()) == 2 and other.text
        paid = sum(r.cost_usd for r in calls.records.values())
        assert runtime.ledger.spent_usd == pytest.approx(paid)
    finally:
        await agent.close()


async def test_failures_become_buggy_proposals(server: ScriptedLLMServer) -> None:
    config = LLMConfig(max_retries=1, backoff_s=0.001, timeout_s=5)
    runtime = LLMRuntime(config, run_id=1, calls=MemoryCalls())
    agent = _agent(server)
    try:
        server.inject("500", 2)
        failed = await agent.propose(DRAFT, _context(runtime))
        assert failed.error is not None and "llm call failed" in failed.error
        assert "HTTP 500" in failed.error
        (stored,) = runtime.calls.records.values()  # type: ignore[attr-defined]
        assert stored.status == "error" and stored.retries == 1  # the failure is replayed too
        server.script = lambda prompt, body: "No arrangement today."
        bad = await agent.propose(DRAFT, _context(runtime, step=2))
        assert bad.error is not None and bad.error.startswith("unparsable reply")
        assert bad.text == "No arrangement today." and bad.tokens_out > 0
    finally:
        await agent.close()


async def test_analyze_is_advisory(server: ScriptedLLMServer) -> None:
    runtime = LLMRuntime(LLMConfig(), run_id=1, calls=MemoryCalls())
    agent = _agent(server)
    try:
        proposal = await agent.propose(DRAFT, _context(runtime))
        from populations.records import NodeRecord, NodeStatus

        record = NodeRecord(node_id=7, run_id=1, agent_id=1, parent_id=None, step=1,
                            operator=Operator.DRAFT, proposal=proposal.text,
                            proposal_key=proposal.text, plan=proposal.plan,
                            status=NodeStatus.RUNNING)  # fmt: skip
        key = EvalKey(proposal_key=proposal.text, task="synthetic", fidelity="exact", seed=0,
                      split=Split.VALIDATION)  # fmt: skip
        outcome = EvalOutcome(key=key, status=EvalStatus.OK, score=0.25)
        analysis = await agent.analyze(record, outcome, _context(runtime))
        assert analysis is not None and analysis.is_bug is False and analysis.metric == 0.99
        stored = [r for r in runtime.calls.records.values() if r.operator == "analyze"]  # type: ignore[attr-defined]
        assert len(stored) == 1 and stored[0].node_id == 7
    finally:
        await agent.close()


def test_ledger_counts_calls_in_flight() -> None:
    stops: list[str] = []
    prices = PriceTable({"m": {"input_per_mtok": 1_000_000.0, "output_per_mtok": 0.0}})
    ledger = Ledger(prices, cap_usd=10.0, on_cap=stops.append)
    first = ledger.reserve("a", 4.0)
    second = ledger.reserve("b", 4.0)
    with pytest.raises(CostCapReached, match="in flight"):
        ledger.reserve("c", 4.0)  # 4 + 4 in flight + 4 > 10, though nothing is spent yet
    assert stops == ["cost cap"]
    first.settle(1.0)
    second.settle(1.0)
    second.settle(1.0)  # settling twice is harmless
    assert ledger.spent_usd == 2.0 and ledger.booked_usd == 0.0 and ledger.n_in_flight == 0
    assert ledger.by_agent == {"a": 1.0, "b": 1.0}
    with pytest.raises(CostCapReached):
        ledger.reserve("d", 0.1)  # once tripped, the cap stays tripped
    assert ledger.estimate("m", 300, 0) == pytest.approx(101.0)


async def test_cost_cap_refuses_calls(server: ScriptedLLMServer) -> None:
    stops: list[str] = []
    prices = {"m-1": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}}
    runtime = LLMRuntime(LLMConfig(prices=prices, cost_cap_usd=0.5), run_id=1,
                         calls=MemoryCalls(), on_cap=stops.append)  # fmt: skip
    agent = _agent(server)
    try:
        proposals = await asyncio.gather(
            *(agent.propose(DRAFT, _context(runtime, slot=i)) for i in range(3))
        )
    finally:
        await agent.close()
    refused = [p for p in proposals if p.error and "cost cap" in p.error]
    assert refused and stops == ["cost cap"]
    assert sum(server.received.values()) == len(proposals) - len(refused)


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRA_TEST_KEY", raising=False)
    agent = AgentConfig(name="gpt", proposer="llm", provider="openai", model="m",
                        api_key_env="AIRA_TEST_KEY")  # fmt: skip
    with pytest.raises(ConfigError, match="AIRA_TEST_KEY"):
        make_llm_agent(agent)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    claude = AgentConfig(name="c", proposer="llm", provider="anthropic", model="m")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        build_agent(claude, DaemonConfig(agents=(claude,)))
    local = AgentConfig(name="l", proposer="llm", provider="openai-compatible", model="m",
                        base_url="http://127.0.0.1:1/v1")  # fmt: skip
    assert make_llm_agent(local).kind == "llm:openai-compatible/m"  # local servers need no key


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('provider = "gemini"\nmodel = "x"', "unknown provider"),
        ('provider = "openai"', "needs a model"),
        ('provider = "openai-compatible"\nmodel = "x"', "base_url"),
    ],
)
def test_llm_agent_config_errors(tmp_path: Path, text: str, match: str) -> None:
    from aira_async.config import load_population

    path = tmp_path / "p.toml"
    path.write_text(f'[[agents]]\nname = "a"\nproposer = "llm"\n{text}\n')
    with pytest.raises(ConfigError, match=match):
        load_population(path)


def test_llm_section_is_checked(tmp_path: Path) -> None:
    from aira_async.config import load_population

    path = tmp_path / "p.toml"
    base = '[[agents]]\nname = "a"\n'
    path.write_text("[llm]\nprices = { m = { input_per_mtok = 1 } }\n" + base)
    with pytest.raises(ConfigError, match=r"llm\.prices\.m"):
        load_population(path)
    path.write_text("[llm]\nconcurrency = { openai = 0 }\n" + base)
    with pytest.raises(ConfigError, match=r"llm\.concurrency\.openai"):
        load_population(path)
    path.write_text("[llm]\nretries = 3\n" + base)
    with pytest.raises(ConfigError, match="'retries'"):
        load_population(path)
    path.write_text("[llm]\ncost_cap_usd = 5.0\nconcurrency = { anthropic = 2 }\n" + base)
    config = load_population(path)
    assert config.llm.limit("anthropic") == 2 and config.llm.limit("openai") == 8
    assert DaemonConfig.from_dict(config.to_dict()) == config
