"""Operator prompts for arrangement tasks (FACTS §2): Draft, Improve, Debug and Analyze.

Every operator gets the task as a project description (the way an AIRS-Bench
`project_description.md` states it) and answers with a plan and exactly one solution:

- **Draft**: one new idea, different from those in the memory of earlier nodes;
- **Improve**: the parent's solution and its result, to be made better;
- **Debug**: the buggy solution with its error, and the chain of earlier failed repairs; the fix
  must keep the core idea;
- **Analyze**: a finished node and what the evaluator reported, judged as JSON
  ``{is_bug, summary, metric}`` (structured output). Its metric is only recorded: the score that
  steers the search always comes from the evaluator.

Prompts are pure functions of the agent's tree, so a resumed run rebuilds the same prompts and
replays the stored replies instead of paying for them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from populations.records import ROOT_ID, Action, NodeRecord, Operator
from populations.tree import MemoryEntry, SearchTree

__all__ = [
    "ANALYSIS_SCHEMA",
    "analysis_messages",
    "solution_messages",
]

ANALYSIS_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "is_bug": {"type": "boolean"},
        "summary": {"type": "string"},
        "metric": {"type": ["number", "null"]},
    },
    "required": ["is_bug", "summary", "metric"],
    "additionalProperties": False,
}
"""The JSON schema of an Analyze reply."""

_SYSTEM = """\
You are an expert machine-learning researcher taking part in an automated architecture search.
You propose layer arrangements; a trusted evaluator trains each one and reports its score.

{task}
"""

_FORMAT = """\
Answer in exactly this format:
PLAN: <a few sentences: the idea, and why it should score well>
ARRANGEMENT:
```
<exactly {length} primitives from {alphabet}, separated by spaces>
```"""

_COMPLEXITY = {
    "simple": "Keep the change simple: one clear idea.",
    "normal": "A moderately ambitious change is welcome.",
    "complex": "Earlier attempts from here were many; try a bolder, more complex change.",
}


def _memory_lines(entries: list[MemoryEntry]) -> str:
    if not entries:
        return "(no earlier attempts yet)"
    lines = []
    for e in entries:
        if e.buggy:
            result = f"buggy: {(e.error or 'no score')[:200]}"
        else:
            result = f"validation score {e.metric:.4f}" if e.metric is not None else "no score"
        plan = " ".join(e.plan.split())[:300] or "-"
        lines.append(
            f"- node {e.node_id} ({e.operator.value}): {e.proposal[:200] or '-'} -> {result}."
            f" Plan: {plan}"
        )
    return "\n".join(lines)


def _system(task: str) -> str:
    return _SYSTEM.format(task=task.strip())


def _format(length: int, alphabet: tuple[str, ...]) -> str:
    return _FORMAT.format(length=length, alphabet=", ".join(alphabet))


def _node_block(record: NodeRecord, title: str) -> str:
    result = (
        f"validation score {record.val_fitness:.4f}"
        if record.is_good and record.val_fitness is not None
        else f"error: {record.error or 'no score'}"
    )
    plan = " ".join(record.plan.split()) or "-"
    return (
        f"{title} (node {record.node_id}, {record.operator.value}):\n"
        f"Plan: {plan}\nSolution: {record.proposal or '(empty)'}\nResult: {result}"
    )


def solution_messages(
    action: Action,
    tree: SearchTree,
    *,
    task: str,
    alphabet: tuple[str, ...],
    length: int,
    memory_limit: int,
    slot: int = 0,
    n_slots: int = 1,
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The system prompt and user turn of a Draft, Improve or Debug call.

    Args:
        action: what to do, and to which node.
        tree: the agent's tree (every node in it finished).
        task: the project description.
        alphabet / length: the search space, repeated in the answer format.
        memory_limit: how many earlier nodes the memory shows (most recent).
        slot / n_slots: this proposal's place among those of one step (parallel drafts).

    Raises:
        ValueError: for Analyze or Migrate, or a parent missing from the tree.
    """
    memory = _memory_lines(tree.memory(include_buggy=True, limit=memory_limit))
    fmt = _format(length, alphabet)
    parent = None if action.parent_id in (None, ROOT_ID) else tree[action.parent_id]
    if action.operator is Operator.DRAFT:
        hint = _COMPLEXITY[tree.complexity_hint(ROOT_ID)]
        parallel = (
            f"\nYou are writing draft {slot + 1} of {n_slots} made at the same time;"
            " make it different from the other drafts too."
            if n_slots > 1
            else ""
        )
        body = (
            "Operator: DRAFT. Propose one new arrangement based on an idea different from the"
            f" earlier attempts below. {hint}{parallel}\n\nEarlier attempts:\n{memory}"
        )
    elif action.operator is Operator.IMPROVE:
        if parent is None:
            raise ValueError("improve needs a parent node")
        hint = _COMPLEXITY[tree.complexity_hint(parent.node_id)]
        body = (
            "Operator: IMPROVE. Propose one change to the solution below that should raise its"
            f" validation score. {hint}\n\n{_node_block(parent, 'Solution to improve')}"
            f"\n\nEarlier attempts:\n{memory}"
        )
    elif action.operator is Operator.DEBUG:
        if parent is None:
            raise ValueError("debug needs a parent node")
        chain = tree.debug_chain(parent.node_id)
        history = "\n\n".join(
            _node_block(r, "Original buggy solution" if i == 0 else f"Failed repair {i}")
            for i, r in enumerate(chain)
        )
        body = (
            "Operator: DEBUG. The solution below is buggy: it was invalid or failed to train."
            " Fix it so that it is valid and runs, without changing its core idea.\n\n"
            f"{history}"
        )
    else:
        raise ValueError(f"no solution prompt for operator {action.operator.value!r}")
    return _system(task), (("user", f"{body}\n\n{fmt}"),)


def analysis_messages(
    record: NodeRecord,
    *,
    task: str,
    status: str,
    score: float | None,
    metrics: Mapping[str, Any],
    error: str | None,
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The system prompt and user turn of an Analyze call on one evaluated node."""
    detail = ", ".join(
        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(_flat(metrics).items())
    )
    body = (
        "Operator: ANALYZE. Judge the result of the solution below. Say whether it is buggy"
        " (invalid, failed to train, or gave no usable score), summarise what was learned in one"
        " or two sentences, and give the metric it reached (null if none).\n\n"
        f"Plan: {' '.join(record.plan.split()) or '-'}\nSolution: {record.proposal}\n"
        f"Evaluator status: {status}\nScore: {'none' if score is None else f'{score:.4f}'}\n"
        f"Details: {detail or '-'}\nError: {error or '-'}\n\n"
        'Reply with JSON only: {"is_bug": true|false, "summary": "...", "metric": number|null}'
    )
    return _system(task), (("user", body),)


def _flat(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, int | float | str | bool):
            out[name] = value
    return out
