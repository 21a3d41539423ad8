"""The LM proxy evaluator at smoke fidelity, reached through `primitives.evaluator.evaluate`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from primitives.evaluator import EvalJob, EvalResult, evaluate
from primitives.lm_eval import LM_EVALUATOR_VERSION, LM_FIDELITIES, LM_TASKS
from primitives.lm_train import LMTrainConfig, lr_at
from tests.assets.lm.make_corpus import write_corpus

LAYERS = ("mA", "M", "mA", "M")


@pytest.fixture(scope="module")
def stories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("babistories"), n_train=400, n_test=120)


def _job(data: Path | None, **kw: object) -> EvalJob:
    fields: dict[str, object] = {
        "layers": LAYERS,
        "task": "babistories",
        "fidelity": "smoke",
        "seed": 0,
        "split": "validation",
        "data": None if data is None else str(data),
    }
    fields.update(kw)
    return EvalJob(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def results(stories: Path) -> list[EvalResult]:
    return evaluate([_job(stories), _job(stories, split="test")])


def test_smoke_end_to_end(results: list[EvalResult]) -> None:
    val, test = results
    for r in (val, test):
        assert r.status == "ok", r.error
        assert r.evaluator_version == LM_EVALUATOR_VERSION
        m = r.per_task["babistories"]
        assert r.score == m["loss"] and 0 < m["loss"] < m["loss_first"]  # it learned
        assert m["loss"] < math.log(m["vocab_size"])  # better than a uniform guess
        assert 0 < m["bits_per_byte"] < 8 and r.n_params > 0
    smoke = LM_FIDELITIES["smoke"]
    assert val.per_task["babistories"]["n_fit_rows"] == 112  # 70 % of 160 train rows
    assert val.per_task["babistories"]["n_score_rows"] == 48
    assert test.per_task["babistories"]["n_score_rows"] == smoke.n_test


def test_dclm_from_one_file_and_malformed_jobs(stories: Path, tmp_path: Path) -> None:
    single = write_corpus(tmp_path, n_train=400, n_test=120, layout="single")
    (r,) = evaluate([_job(single / "corpus.jsonl", task="dclm", layers=("M", "M"))])
    assert r.status == "ok", r.error
    with pytest.raises(ValueError, match="needs data"):
        evaluate([_job(None)])
    with pytest.raises(ValueError, match="unknown fidelity"):
        evaluate([_job(stories, fidelity="exact")])
    with pytest.raises(ValueError, match="no such file"):
        evaluate([_job(tmp_path / "nowhere")])


def test_a_corpus_too_small_is_an_error_outcome(tmp_path: Path) -> None:
    tiny = write_corpus(tmp_path, n_train=1, n_test=0)
    (tiny / "test.jsonl").write_text('{"text": "x"}\n')
    (r,) = evaluate([_job(tiny)])
    assert r.status == "error" and r.score is None and "too small" in (r.error or "")


def test_paper_counts_and_schedule() -> None:
    paper = LM_FIDELITIES["paper"]
    assert paper.rows(LM_TASKS["babistories"]) == (927_158, 9_275)
    assert paper.rows(LM_TASKS["dclm"]) == (10_000, 9_275)
    cfg = LMTrainConfig(steps=10, batch_size=2, lr=1.0, lr_min=0.1, warmup_steps=2)
    assert [lr_at(cfg, s) for s in (0, 1)] == [0.5, 1.0]
    assert lr_at(cfg, 2) == 1.0 and lr_at(cfg, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 6) == pytest.approx(0.55)
