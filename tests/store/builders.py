"""Builders of the records the archive tests feed in, and a deterministic clock."""

from __future__ import annotations

from populations.records import (
    Action,
    EvalKey,
    EvalOutcome,
    EvalStatus,
    NodeRecord,
    Operator,
    Proposal,
    Split,
)
from store import NewNode


class FakeClock:
    """Deterministic time: every reading is one second after the previous one."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def proposal(
    text: str = "mA M mA M",
    *,
    parent_id: int | None = None,
    operator: Operator = Operator.DRAFT,
    error: str | None = None,
) -> Proposal:
    return Proposal(
        action=Action(operator=operator, parent_id=parent_id),
        text=text,
        plan=f"plan for {text}",
        error=error,
        tokens_in=100,
        tokens_out=40,
        cost_usd=0.002,
    )


def new_node(text: str = "mA M mA M", *, parent_id: int | None = None) -> NewNode:
    operator = Operator.DRAFT if parent_id is None else Operator.IMPROVE
    return NewNode(
        proposal=proposal(text, parent_id=parent_id, operator=operator),
        proposal_key=text,
        evaluator_version="eval-1",
        config_hash="cfg-hash",
        seed=7,
    )


def key(proposal_key: str, split: Split = Split.VALIDATION) -> EvalKey:
    return EvalKey(proposal_key=proposal_key, task="mad", fidelity="smoke", seed=0, split=split)


def ok(node: NodeRecord, score: float, *, duration_s: float = 2.5, split: Split = Split.VALIDATION
       ) -> EvalOutcome:  # fmt: skip
    return EvalOutcome(
        key=key(node.proposal_key, split),
        status=EvalStatus.OK,
        score=score,
        metrics={"per_task": {"recall": score, "copy": [1, 2, 3]}},
        device="cuda:0",
        duration_s=duration_s,
        peak_mem_mb=512.0,
        evaluator_version="eval-1",
    )


def failed(node: NodeRecord, *, status: EvalStatus = EvalStatus.TIMEOUT) -> EvalOutcome:
    return EvalOutcome(
        key=key(node.proposal_key),
        status=status,
        score=None,
        error="timed out after 30 s",
        duration_s=30.0,
    )
