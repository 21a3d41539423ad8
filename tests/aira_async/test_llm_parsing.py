"""Reply parsing and prompts: the forms models really write, and errors that make buggy nodes."""

from __future__ import annotations

import pytest

from aira_async.agents.llm.parsing import parse_analysis, parse_solution
from aira_async.agents.llm.prompts import analysis_messages, solution_messages
from populations.records import Action, NodeRecord, NodeStatus, Operator
from populations.tree import SearchTree

ALPHABET = ("mA", "M", "Mb")
WANT = "mA M Mb M"


@pytest.mark.parametrize(
    "reply",
    [
        "PLAN: attention first.\nARRANGEMENT:\n```\nmA M Mb M\n```",
        "Plan: attention first.\n\nArrangement: mA, M, Mb, M",
        "Attention first.\nI suggest [mA, M, Mb, M] for this task.",
        "plan: attention first\narrangement: ma m mb m",
        '{"plan": "attention first", "arrangement": ["mA", "M", "Mb", "M"]}',
        "Attention first.\n```text\nMA M MB M\n```\nThat should do it.",
        "Let me think. Attention first.\n\nFinal answer: mA M Mb M",
        "PLAN: attention first\nARRANGEMENT: 'mA', 'M', 'Mb', 'M'",
        "PLAN: attention first\nARRANGEMENT: mA -> M -> Mb -> M",
    ],
)
def test_solution_forms(reply: str) -> None:
    parsed = parse_solution(reply, alphabet=ALPHABET, length=4)
    assert parsed.error is None, parsed.error
    assert parsed.text == WANT
    assert "attention first" in parsed.plan.lower()


def test_repetition_and_json_plan() -> None:
    parsed = parse_solution("PLAN: stripes\nARRANGEMENT: (mA M)x2", alphabet=ALPHABET, length=4)
    assert parsed.text == "mA M mA M" and parsed.plan == "stripes"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty reply"),
        ("PLAN: x\nI think attention is all you need.", "unparsable reply"),
        ("PLAN: x\nARRANGEMENT: mA M Mb", "3 layers; expected 4"),
        ("ARRANGEMENT: mA M Xq M", "unparsable reply"),
    ],
)
def test_unparsable_replies_carry_a_reason(reply: str, reason: str) -> None:
    parsed = parse_solution(reply, alphabet=ALPHABET, length=4)
    assert parsed.error is not None and reason in parsed.error
    assert parsed.text == reply.strip()


def test_outside_the_search_space_and_truncation() -> None:
    parsed = parse_solution("ARRANGEMENT: mA M Mb M", alphabet=("mA", "M"), length=4)
    assert parsed.error is not None and "outside the search space" in parsed.error
    cut = parse_solution("PLAN: a long", alphabet=ALPHABET, length=4, finish_reason="length")
    assert cut.error is not None and "max_tokens" in cut.error


@pytest.mark.parametrize(
    "reply",
    [
        '{"is_bug": false, "summary": "fine", "metric": 0.5}',
        'Here you go:\n```json\n{"is_bug": "false", "summary": "fine", "metric": "0.5"}\n```',
    ],
)
def test_analysis(reply: str) -> None:
    analysis = parse_analysis(reply)
    assert analysis.is_bug is False and analysis.summary == "fine" and analysis.metric == 0.5


def test_analysis_without_json_is_refused() -> None:
    with pytest.raises(ValueError, match="is_bug"):
        parse_analysis("It looks fine to me.")


def _node(node_id: int, parent: int | None, op: Operator, **kw: object) -> NodeRecord:
    base: dict[str, object] = dict(
        node_id=node_id, run_id=1, agent_id=1, parent_id=parent, step=node_id, operator=op,
        proposal="mA M Mb M", proposal_key="mA M Mb M", plan=f"plan {node_id}",
        status=NodeStatus.COMPLETE, val_fitness=0.5,
    )  # fmt: skip
    base.update(kw)
    return NodeRecord(**base)  # type: ignore[arg-type]


def test_prompts_follow_the_operators() -> None:
    tree = SearchTree(
        [
            _node(1, None, Operator.DRAFT),
            _node(2, 1, Operator.IMPROVE, status=NodeStatus.FAILED, val_fitness=None,
                  error="invalid proposal: arrangement has 3 layers; expected 4"),
            _node(3, 2, Operator.DEBUG, status=NodeStatus.FAILED, val_fitness=None, error="oom"),
        ]
    )  # fmt: skip
    kw = dict(task="# Task: T", alphabet=ALPHABET, length=4, memory_limit=10)
    system, (draft,) = solution_messages(
        Action(operator=Operator.DRAFT, parent_id=None), tree, slot=1, n_slots=3, **kw
    )
    assert "# Task: T" in system
    assert "DRAFT" in draft[1] and "draft 2 of 3" in draft[1] and "node 1" in draft[1]
    _, (improve,) = solution_messages(Action(operator=Operator.IMPROVE, parent_id=1), tree, **kw)
    assert "IMPROVE" in improve[1] and "validation score 0.5000" in improve[1]
    debug_action = Action(operator=Operator.DEBUG, parent_id=3)
    debug_prompt = solution_messages(debug_action, tree, **kw)
    (debug,) = debug_prompt[1]
    assert "Original buggy solution (node 2" in debug[1] and "Failed repair 1 (node 3" in debug[1]
    assert "expected 4" in debug[1] and "without changing its core idea" in debug[1]
    assert solution_messages(debug_action, tree.copy(), **kw) == debug_prompt  # deterministic
    _, (analysis,) = analysis_messages(
        tree[1], task="# Task: T", status="ok", score=0.5, metrics={"a": {"b": 1.0}}, error=None
    )
    assert "ANALYZE" in analysis[1] and "a.b=1.0000" in analysis[1] and "is_bug" in analysis[1]
