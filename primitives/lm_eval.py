"""The trusted LM proxy evaluator: train an arrangement on a text corpus, score its loss.

Tasks (:data:`LM_TASKS`; FACTS §1, §8): ``babistories`` (Memory Mosaics' BabiStories; not on the
Hugging Face hub: point ``data`` at the unpacked ``.jsonl`` files) and ``dclm`` (a fixed subset of
``hf:mlfoundations/dclm-baseline-1.0``, or local files). The metric is the mean next-token
cross-entropy in nats per token on the score rows (**lower is better**); bits per byte is
reported beside it (key ``bits_per_byte``), as it does not depend on the tokenizer.

Splits, as for MAD: "validation" fits on the first 70 % of the train rows and scores the other
30 %; "test" fits on all train rows and scores the test rows. Results carry scores only.

Fidelities (:data:`LM_FIDELITIES`). Sample counts are the paper's; a sample is one packed row
of ``seq_len + 1`` tokens (:mod:`primitives.lm_data`). The model width and the optimisation of
``paper`` are this project's choice (the paper does not state them for the LM proxies).

=====================  ==============================  =========================
setting                paper (GPU)                     smoke (2 CPU cores)
=====================  ==============================  =========================
train / test rows      BabiStories 927,158 / 9,275;    160 / 64
                       DCLM 10,000 / 9,275
row length T           512                             64
tokenizer              byte-level BPE, 8,192 ids,      byte-level BPE, 512 ids
                       trained on <= 100,000 train
                       documents
width D / heads        256 / 4                         32 / 4
Mamba2 N, P, K         64, 64, 256                     16, 16, 32
epochs / batch         1 / 64                          2 / 16
AdamW lr -> lr_min     1e-3 -> 1e-4, warmup 100, wd    3e-3 -> 3e-4, warmup 2,
                       0.1, betas (0.9, 0.95), clip 1  same decay, betas, clip
precision              bf16 autocast on CUDA           fp32
=====================  ==============================  =========================

Failures are outcomes, as in :mod:`primitives.evaluator`: "diverged", "oom", "timeout" or
"error" (a corpus that cannot be read, or one too small for a single batch, is an "error").
A malformed job (unknown task or fidelity, missing ``data``, bad layers or device) raises
ValueError before anything is read.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from primitives.counting import count_parameters, layer_parameters
from primitives.evaluator import EvalJob, EvalProgress, EvalResult, check_job
from primitives.lm_data import Corpus, load_corpus, parse_source
from primitives.lm_train import LMTrainConfig, eval_loss, train_lm
from primitives.mad import VALIDATION_FRACTION
from primitives.model import ModelConfig, build_model

__all__ = [
    "LM_EVALUATOR_VERSION",
    "LM_FIDELITIES",
    "LM_TASKS",
    "LMFidelity",
    "LMTask",
    "corpus_for",
    "evaluate_lm",
    "is_lm_task",
    "lm_model_config",
]

LM_EVALUATOR_VERSION = "lm-1"


@dataclass(frozen=True, kw_only=True)
class LMTask:
    """One LM proxy task: its name, paper sample counts and where its data usually are."""

    name: str
    title: str
    n_train: int
    n_test: int
    data_hint: str


LM_TASKS: dict[str, LMTask] = {
    "babistories": LMTask(
        name="babistories",
        title="BabiStories",
        n_train=927_158,
        n_test=9_275,
        data_hint="a directory with train*.jsonl / test*.jsonl (one JSON story a line)",
    ),
    "dclm": LMTask(
        name="dclm",
        title="DCLM subset",
        n_train=10_000,
        n_test=9_275,
        data_hint="hf:mlfoundations/dclm-baseline-1.0 or local .jsonl / .parquet files",
    ),
}


@dataclass(frozen=True, kw_only=True)
class LMFidelity:
    """How hard an LM evaluation trains (module docstring). Frozen.

    ``n_train`` / ``n_test`` of None mean the task's paper counts.
    """

    name: str
    d_model: int
    n_heads: int
    d_state: int
    headdim: int
    chunk_size: int
    seq_len: int
    vocab_size: int
    expand: int = 2
    n_train: int | None = None
    n_test: int | None = None
    tokenizer: str = "bpe"
    tokenizer_docs: int = 100_000
    epochs: float = 1.0
    batch_size: int = 64
    eval_batch_size: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    bf16: bool = True
    check_every: int = 16

    def __post_init__(self) -> None:
        for key in ("d_model", "n_heads", "seq_len", "batch_size", "eval_batch_size"):
            if getattr(self, key) <= 0:
                raise ValueError(f"LMFidelity.{key} must be positive, got {getattr(self, key)}")
        if self.epochs <= 0:
            raise ValueError(f"LMFidelity.epochs must be positive, got {self.epochs}")

    def rows(self, task: LMTask) -> tuple[int, int]:
        """(train, test) rows asked for ``task``."""
        n_train = task.n_train if self.n_train is None else self.n_train
        return n_train, task.n_test if self.n_test is None else self.n_test

    def train_config(self, n_rows: int) -> LMTrainConfig:
        """The fit of ``n_rows`` rows: ``epochs`` passes of full batches."""
        batch = min(self.batch_size, n_rows)
        steps = max(1, math.ceil(self.epochs * (n_rows // batch)))
        return LMTrainConfig(
            steps=steps,
            batch_size=batch,
            lr=self.lr,
            lr_min=self.lr_min,
            warmup_steps=min(self.warmup_steps, steps // 2),
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            bf16=self.bf16,
            check_every=self.check_every,
        )


LM_FIDELITIES: dict[str, LMFidelity] = {
    "paper": LMFidelity(
        name="paper",
        d_model=256,
        n_heads=4,
        d_state=64,
        headdim=64,
        chunk_size=256,
        seq_len=512,
        vocab_size=8192,
    ),
    "smoke": LMFidelity(
        name="smoke",
        d_model=32,
        n_heads=4,
        d_state=16,
        headdim=16,
        chunk_size=32,
        seq_len=64,
        vocab_size=512,
        n_train=160,
        n_test=64,
        tokenizer_docs=2_000,
        epochs=2.0,
        batch_size=16,
        eval_batch_size=64,
        lr=3e-3,
        lr_min=3e-4,
        warmup_steps=2,
        check_every=8,
    ),
}


def is_lm_task(name: str) -> bool:
    """Whether ``name`` is an LM task (:func:`primitives.evaluator.evaluate` routes it here)."""
    return name in LM_TASKS


def lm_model_config(layers: tuple[str, ...], fid: LMFidelity, vocab_size: int) -> ModelConfig:
    """The proxy model of an arrangement at an LM fidelity (next-token head)."""
    return ModelConfig(
        layers=layers,
        d_model=fid.d_model,
        vocab_size=vocab_size,
        n_heads=fid.n_heads,
        d_state=fid.d_state,
        headdim=fid.headdim,
        expand=fid.expand,
        chunk_size=fid.chunk_size,
    )


def _fidelity(job: EvalJob) -> LMFidelity:
    if isinstance(job.fidelity, LMFidelity):
        return job.fidelity
    if isinstance(job.fidelity, str) and job.fidelity in LM_FIDELITIES:
        return LM_FIDELITIES[job.fidelity]
    raise ValueError(
        f"unknown fidelity {job.fidelity!r} for {job.task}; expected one of {list(LM_FIDELITIES)}"
    )


def resolve(job: EvalJob) -> tuple[LMTask, LMFidelity, torch.device]:
    """Validate an LM job; raises ValueError naming the problem."""
    if job.task not in LM_TASKS:
        raise ValueError(f"unknown LM task {job.task!r}; expected one of {list(LM_TASKS)}")
    task = LM_TASKS[job.task]
    fid = _fidelity(job)
    if not job.data:
        raise ValueError(f"task {job.task} needs data: {task.data_hint}")
    parse_source(job.data)  # a missing path fails here, before any training
    device = check_job(job)
    lm_model_config(job.layers, fid, fid.vocab_size)  # shape errors surface here
    return task, fid, device


@functools.lru_cache(maxsize=4)
def _corpus(data: str, seq_len: int, rows: tuple[int, int], tok: tuple[str, int, int]) -> Corpus:
    return load_corpus(
        parse_source(data),
        seq_len=seq_len,
        n_train=rows[0],
        n_test=rows[1],
        tokenizer=tok[0],
        vocab_size=tok[1],
        tokenizer_docs=tok[2],
    )


def corpus_for(data: str, task: LMTask, fid: LMFidelity) -> Corpus:
    """The tokenized corpus of a (data, task, fidelity); cached per process."""
    tok = (fid.tokenizer, fid.vocab_size, fid.tokenizer_docs)
    return _corpus(data, fid.seq_len, fid.rows(task), tok)


def evaluate_lm(
    index: int,
    job: EvalJob,
    *,
    progress: Callable[[EvalProgress], None] | None = None,
    time_limit_s: float | None = None,
) -> EvalResult:
    """Train and score one LM job. A failing job returns a result with its status; never raises
    except ValueError for a malformed job (see :func:`resolve`)."""
    task, fid, device = resolve(job)
    start = time.perf_counter()
    deadline = None if time_limit_s is None else start + time_limit_s
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    cfg0 = lm_model_config(job.layers, fid, fid.vocab_size)
    n_params = sum(layer_parameters(cfg0, kind) for kind in job.layers)
    metrics: dict[str, float] = {}
    status, error, score = "ok", None, None
    try:
        status, error, score = _fit_and_score(index, job, task, fid, device, deadline, metrics)
        if progress is not None:
            progress(
                EvalProgress(job_index=index, task=task.name, epoch=0, n_epochs=1, macro_acc=None)
            )
    except torch.cuda.OutOfMemoryError as exc:
        status, error = "oom", _one_line(exc)
    except MemoryError as exc:
        status, error = "oom", f"MemoryError: {_one_line(exc)}"
    except Exception as exc:  # a failed job is an outcome, not a crash
        status, error = "error", f"{type(exc).__name__}: {_one_line(exc)}"
    finally:
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
        if cuda:
            torch.cuda.empty_cache()
    if status != "ok":
        score = None
    metrics["wall_s"] = time.perf_counter() - start
    return EvalResult(
        job=job,
        status=status,
        score=score,
        per_task={task.name: metrics},
        wall_s=metrics["wall_s"],
        device=torch.cuda.get_device_name(device) if cuda else "cpu",
        peak_mem_mb=peak,
        error=error,
        evaluator_version=LM_EVALUATOR_VERSION,
        n_params=n_params,
    )


def _fit_and_score(
    index: int,
    job: EvalJob,
    task: LMTask,
    fid: LMFidelity,
    device: torch.device,
    deadline: float | None,
    metrics: dict[str, float],
) -> tuple[str, str | None, float | None]:
    assert job.data is not None
    corpus = corpus_for(job.data, task, fid)
    train = corpus.train  # (n, T+1)
    if job.split == "test":
        fit, scored = train, corpus.test
    else:
        n_score = max(1, math.floor(train.shape[0] * VALIDATION_FRACTION + 0.5))
        fit, scored = train[: train.shape[0] - n_score], train[train.shape[0] - n_score :]
    if fit.shape[0] < 1 or scored.shape[0] < 1:
        rows = f"{train.shape[0]} train / {corpus.test.shape[0]} test rows"
        return "error", f"corpus too small: {rows} of {fid.seq_len + 1} tokens", None
    vocab = corpus.tokenizer.vocab_size
    cfg = lm_model_config(job.layers, fid, vocab)
    torch.manual_seed(job.seed)
    model = build_model(cfg).to(device)
    loop = fid.train_config(int(fit.shape[0]))
    out = train_lm(model, fit, loop, seed=job.seed, deadline=deadline)
    metrics.update(
        loss_first=out.loss_first,
        loss_min=out.loss_min,
        loss_last=out.loss_last,
        final_loss=out.final_loss,
        n_steps=float(out.n_steps),
        n_tokens=float(out.n_tokens),
        n_fit_rows=float(fit.shape[0]),
        n_score_rows=float(scored.shape[0]),
        vocab_size=float(vocab),
        n_params=float(count_parameters(cfg)),
    )
    if out.status == "diverged":
        return "diverged", f"{task.name}: loss diverged after {out.n_steps} steps", None
    if out.status == "timeout":
        return "timeout", f"{task.name}: time limit reached after {out.n_steps} steps", None
    sizes = torch.tensor(corpus.tokenizer.token_bytes, dtype=torch.int64)  # (V,)
    stats = eval_loss(
        model, scored, batch_size=fid.eval_batch_size, token_bytes=sizes, bf16=fid.bf16
    )
    if not math.isfinite(stats.loss):
        return "diverged", f"{task.name}: non-finite score-set loss", None
    metrics.update(
        loss=stats.loss,
        bits_per_byte=stats.bits_per_byte,
        perplexity=math.exp(min(stats.loss, 50.0)),
        n_score_tokens=float(stats.n_tokens),
    )
    return "ok", None, stats.loss


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
