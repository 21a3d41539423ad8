"""The MAD evaluator at smoke fidelity: end to end, determinism, failures as outcomes, learning."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from primitives.evaluator import (
    EVALUATOR_VERSION,
    FIDELITIES,
    EvalJob,
    EvalProgress,
    EvalResult,
    evaluate,
)
from primitives.mad import IGNORE_INDEX, TASK_NAMES
from primitives.training import accuracy_counts

LAYERS = ("mA", "M", "Mb", "M")
SMOKE = FIDELITIES["smoke"]
METRIC_KEYS = {
    "macro_acc",
    "token_acc",
    "final_loss",
    "loss_first",
    "loss_min",
    "loss_last",
    "n_steps",
    "n_epochs",
    "early_stopped",
    "n_params",
    "wall_s",
}


def _job(task: str = "mad", **kw: object) -> EvalJob:
    fields: dict[str, object] = {
        "layers": LAYERS,
        "task": task,
        "fidelity": "smoke",
        "seed": 0,
        "split": "test",
    }
    fields.update(kw)
    return EvalJob(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def mad_result() -> EvalResult:
    (result,) = evaluate([_job()])
    return result


def test_smoke_mad_end_to_end(mad_result: EvalResult) -> None:
    r = mad_result
    assert r.status == "ok", r.error
    assert r.score is not None and 0.0 <= r.score <= 1.0
    assert list(r.per_task) == list(TASK_NAMES)
    for metrics in r.per_task.values():
        assert set(metrics) == METRIC_KEYS
        assert 0.0 <= metrics["macro_acc"] <= 1.0 and 0.0 <= metrics["token_acc"] <= 1.0
        assert math.isfinite(metrics["final_loss"]) and metrics["n_steps"] > 0
    assert r.score == pytest.approx(sum(m["macro_acc"] for m in r.per_task.values()) / 6)
    assert r.evaluator_version == EVALUATOR_VERSION and r.device == "cpu"
    assert r.error is None and r.n_params > 0 and r.wall_s > 0


def test_same_job_same_score(mad_result: EvalResult) -> None:
    # A single-task job reproduces that task inside the "mad" job: same data, init, order.
    (a,) = evaluate([_job("compression")])
    (b,) = evaluate([_job("compression")])
    assert a.status == b.status == "ok"
    assert a.score == b.score and a.score is not None
    timeless = METRIC_KEYS - {"wall_s"}
    for key in timeless:
        assert a.per_task["compression"][key] == b.per_task["compression"][key], key
        assert a.per_task["compression"][key] == mad_result.per_task["compression"][key], key


def test_divergence_is_an_outcome_and_spares_the_batch() -> None:
    exploding = dataclasses.replace(SMOKE, name="exploding", lr=1e6, lr_min=1e6)
    bad, good = evaluate(
        [
            _job("selective_copying", fidelity=exploding),
            _job("memorization"),
        ]
    )
    assert bad.status == "diverged" and bad.score is None
    assert bad.error is not None and "diverged" in bad.error
    assert bad.per_task == {}
    assert good.status == "ok" and good.score is not None


def test_time_limit_gives_timeout() -> None:
    (r,) = evaluate([_job("memorization")], time_limit_s=0.0)
    assert r.status == "timeout" and r.score is None and r.error is not None


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"task": "copying"}, "unknown task"),
        ({"fidelity": "huge"}, "unknown fidelity"),
        ({"layers": ("mA", "X")}, "not a primitive"),
        ({"split": "train"}, "unknown split"),
    ],
)
def test_invalid_jobs_raise_before_training(change: dict[str, object], match: str) -> None:
    calls: list[EvalProgress] = []
    with pytest.raises(ValueError, match=match):
        evaluate([_job("memorization"), _job(**change)], progress=calls.append)
    assert calls == []  # the valid job in front did not start


def test_progress_and_validation_split() -> None:
    calls: list[EvalProgress] = []
    (r,) = evaluate([_job("memorization", split="validation")], progress=calls.append)
    assert r.status == "ok"
    assert [c.epoch for c in calls] == list(range(len(calls))) and len(calls) >= 1
    assert all(c.task == "memorization" and c.n_epochs == SMOKE.epochs for c in calls)


def test_a_model_learns_memorization() -> None:
    # Chance is 1/128. The control with a near-zero learning rate shows the bar is not free.
    frozen = dataclasses.replace(SMOKE, name="frozen", lr=1e-7, lr_min=1e-8)
    trained, control = evaluate(
        [
            _job("memorization", layers=("mA", "M")),
            _job("memorization", layers=("mA", "M"), fidelity=frozen),
        ]
    )
    assert trained.status == control.status == "ok"
    assert trained.score is not None and control.score is not None
    assert trained.score > 0.6
    assert control.score < 0.05


def test_macro_vs_token_accuracy() -> None:
    # Class 0: 3 tokens, all right; class 1: 1 token, wrong. Token 3/4, macro (1 + 0) / 2.
    targets = torch.tensor([[0, 0, 0, 1, IGNORE_INDEX]])
    preds = torch.tensor([[0, 0, 0, 0, 1]])
    logits = torch.nn.functional.one_hot(preds, 3).float()  # (1, 5, 3)
    total, correct = accuracy_counts(logits, targets, 3)
    assert total.tolist() == [3, 1, 0] and correct.tolist() == [3, 0, 0]


def test_an_exception_inside_a_job_is_an_error_outcome() -> None:
    def explode(event: EvalProgress) -> None:
        if event.job_index == 0:
            raise RuntimeError("boom\nsecond line")

    broken, fine = evaluate([_job("memorization"), _job("memorization")], progress=explode)
    assert broken.status == "error" and broken.score is None
    assert broken.error == "RuntimeError: boom"
    assert fine.status == "ok"
