"""The trusted MAD evaluator: train an arrangement on MAD tasks and score it.

``evaluate(jobs)`` trains one fresh model per (job, task) with the protocol of FACTS §5 and
returns one frozen :class:`EvalResult` per job. The score is the mean over the job's tasks of the
**macro accuracy** (per-class mean over target tokens, MAD's metric, key ``macro_acc``); plain
token accuracy is reported beside it (key ``token_acc``). Results carry scores only: test labels
never leave this module. Jobs for the LM proxy tasks (BabiStories, DCLM: cross-entropy, lower is
better) are routed to :mod:`primitives.lm_eval` by task name and return the same records.

Fidelities (:data:`FIDELITIES`):

==================  ==========================  ===========================================
setting             paper (MAD protocol)        smoke (2 CPU cores)
==================  ==========================  ===========================================
width D / heads     128 / 16                    32 / 4
Mamba2 N, P, K      128, 64, 256 (mamba-ssm)    16, 16, 32
train / test rows   800 / 1,280                 192 / 128
S recall tasks      128 (T = 127)               32 (T = 31), fuzzy: 4 keys a row
S selective copy    256, 16 tokens to copy      32, 4 tokens to copy
S compression       32                          16
S memorization      32 (V = 256)                32 (V = 256)
epochs / batch      200 / 128                   12 / 32
AdamW lr, wd        5e-4 -> 1e-6 cosine, 0      3e-3 -> 1e-5 cosine, 0
precision           bf16 autocast on CUDA       fp32
early stop          macro acc >= 0.999, scored  same, scored every 4 epochs and at the end
                    every epoch
==================  ==========================  ===========================================

Smoke timings measured on the 2-core development CPU (torch 2.13, shared machine), all six
tasks: (mA M Mb M) 10-15 s, (mA M)x4 11 s, (mA M Mb M)x2 22-29 s. Mamba2 runs its pure-PyTorch
SSD on the CPU, so Mb-heavy arrangements are the slow ones. Smoke scores are far below paper
scores: the three recall tasks stay near chance at this size (induction needs ~1,000 steps), so
smoke ranks arrangements only on copying, compression and memorization. It exists so the daemon
and tests run without a GPU.

Seeds. A job's ``seed`` selects the data (generator seed 12345 + seed, so seed 0 is MAD's own
data) and the model initialisation and shuffle order of each task (seeded from the job seed and
the task's index, so a single-task job reproduces the same task inside a "mad" job). On the CPU
the same job gives the same result.

Splits. "validation" fits on the first 70 % of train and scores the other 30 % with test-style
targets; "test" fits on all of train and scores the test rows (:func:`primitives.mad.split_for`).

Failures are outcomes, never exceptions: a non-finite or exploding loss (above 10x the first
step's, or 1e4) stops the job as "diverged", CUDA out-of-memory is "oom", a job past its time
limit is "timeout", anything else is "error" with a one-line message. Only a malformed job
(unknown task, fidelity, primitive, split or device) raises ValueError, before any training.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from primitives.counting import count_parameters, layer_parameters
from primitives.mad import (
    MAD_DATA_SEED,
    PAPER_TASKS,
    SPLITS,
    TASK_NAMES,
    MadData,
    MadTask,
    make_dataset,
    split_for,
)
from primitives.model import PRIMITIVES, ModelConfig, build_model
from primitives.training import Accuracy, LoopConfig, fit_and_score

if TYPE_CHECKING:
    from primitives.lm_eval import LMFidelity

__all__ = [
    "EVALUATOR_VERSION",
    "FIDELITIES",
    "STATUSES",
    "EvalJob",
    "EvalProgress",
    "EvalResult",
    "Fidelity",
    "evaluate",
    "tasks_for",
]

EVALUATOR_VERSION = "mad-1"
STATUSES = ("ok", "diverged", "oom", "timeout", "error")


@dataclass(frozen=True, kw_only=True)
class Fidelity:
    """How hard an evaluation trains. Frozen; part of what a result was scored under.

    Attributes:
        name: registry name ("paper", "smoke") or a label for a custom fidelity.
        d_model, n_heads: model width and attention heads.
        d_state, headdim, chunk_size, expand: Mamba2 settings.
        n_train, n_test: rows per task.
        seq_lens: (task, S) pairs overriding a task's generated length S.
        n_copy: tokens selective copying must copy. n_keys: fuzzy-recall keys per row.
        epochs, batch_size, eval_batch_size, lr, lr_min, weight_decay: optimisation.
        early_stop_acc, eval_every: stop at this score-set macro accuracy, scored every
            ``eval_every`` epochs (and after the last).
        check_every, diverge_factor: divergence checks every so many steps; a loss above
            ``diverge_factor`` x the first step's loss (or 1e4) is divergence.
        bf16: bf16 autocast on CUDA.
    """

    name: str
    d_model: int
    n_heads: int
    d_state: int
    headdim: int
    chunk_size: int
    expand: int = 2
    n_train: int = 800
    n_test: int = 1280
    seq_lens: tuple[tuple[str, int], ...] = ()
    n_copy: int = 16
    n_keys: int = 8
    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 256
    lr: float = 5e-4
    lr_min: float = 1e-6
    weight_decay: float = 0.0
    early_stop_acc: float = 0.999
    eval_every: int = 1
    check_every: int = 32
    diverge_factor: float = 10.0
    bf16: bool = True

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Fidelity.{name} must be positive, got {getattr(self, name)}")
        for task, _ in self.seq_lens:
            if task not in TASK_NAMES:
                raise ValueError(f"Fidelity.seq_lens names unknown task {task!r}")
        if not (self.lr > 0 and self.lr_min >= 0):
            raise ValueError(
                f"Fidelity needs lr > 0 and lr_min >= 0, got {self.lr}, {self.lr_min}"
            )

    def loop(self) -> LoopConfig:
        """The training-loop slice of this fidelity."""
        return LoopConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            lr=self.lr,
            lr_min=self.lr_min,
            weight_decay=self.weight_decay,
            early_stop_acc=self.early_stop_acc,
            eval_every=self.eval_every,
            check_every=self.check_every,
            diverge_factor=self.diverge_factor,
            bf16=self.bf16,
        )


FIDELITIES: dict[str, Fidelity] = {
    "paper": Fidelity(
        name="paper", d_model=128, n_heads=16, d_state=128, headdim=64, chunk_size=256
    ),
    "smoke": Fidelity(
        name="smoke",
        d_model=32,
        n_heads=4,
        d_state=16,
        headdim=16,
        chunk_size=32,
        n_train=192,
        n_test=128,
        seq_lens=(
            ("in_context_recall", 32),
            ("noisy_in_context_recall", 32),
            ("fuzzy_in_context_recall", 32),
            ("selective_copying", 32),
            ("compression", 16),
        ),
        n_copy=4,
        n_keys=4,
        epochs=12,
        batch_size=32,
        eval_batch_size=128,
        lr=3e-3,
        lr_min=1e-5,
        eval_every=4,
        check_every=16,
    ),
}


@dataclass(frozen=True, kw_only=True)
class EvalJob:
    """One evaluation request.

    Attributes:
        layers: the arrangement, e.g. ("mA", "M", "Mb", "M").
        task: "mad" (all six tasks), one name of :data:`primitives.mad.TASK_NAMES`, or an LM
            proxy task of :data:`primitives.lm_eval.LM_TASKS` ("babistories", "dclm").
        fidelity: a :data:`FIDELITIES` name, or a :class:`Fidelity` (tests, benchmarks).
        seed: data, initialisation and shuffle seed.
        split: "validation" (70:30 of train) or "test".
        device: a torch device string, "cpu" or "cuda[:i]".
        data: LM tasks only (:mod:`primitives.lm_eval`): where the corpus is, ``hf:ID[:CONFIG]``,
            a directory or a file (:func:`primitives.lm_data.parse_source`).
    """

    layers: tuple[str, ...]
    task: str
    fidelity: str | Fidelity | LMFidelity
    seed: int
    split: str
    device: str = "cpu"
    data: str | None = None

    def __post_init__(self) -> None:
        layers = self.layers.split() if isinstance(self.layers, str) else self.layers
        object.__setattr__(self, "layers", tuple(layers))


@dataclass(frozen=True, kw_only=True)
class EvalResult:
    """The outcome of one job. Carries scores only (no labels, no model).

    Attributes:
        job: the request.
        status: one of :data:`STATUSES`.
        score: mean over the job's tasks of macro accuracy, in [0, 1]; for an LM task the
            score-set cross-entropy in nats per token (lower is better). None unless "ok".
        per_task: task -> metrics (all floats): ``macro_acc`` (the scored metric),
            ``token_acc``, ``final_loss`` (mean step loss of the last epoch), ``loss_first``,
            ``loss_min``, ``loss_last``, ``n_steps``, ``n_epochs``, ``early_stopped`` (0/1),
            ``n_params`` (the whole task model), ``wall_s``. Tasks finished before a failure
            stay listed.
        wall_s: seconds for the job (data, build, train, score).
        device: "cpu" or the CUDA device's name.
        peak_mem_mb: CUDA: peak allocated memory of the job; CPU: the process's peak RSS.
        error: a one-line reason when status is not "ok".
        evaluator_version: :data:`EVALUATOR_VERSION`.
        n_params: parameters of the arrangement's layers at this fidelity's width (embedding,
            head and compression decoder excluded, so it does not depend on the task).
    """

    job: EvalJob
    status: str
    score: float | None
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_s: float = 0.0
    device: str = "cpu"
    peak_mem_mb: float | None = None
    error: str | None = None
    evaluator_version: str = EVALUATOR_VERSION
    n_params: int = 0


@dataclass(frozen=True, kw_only=True)
class EvalProgress:
    """Reported to ``evaluate``'s progress callback after every epoch."""

    job_index: int
    task: str
    epoch: int
    n_epochs: int
    macro_acc: float | None


def tasks_for(fidelity: Fidelity) -> dict[str, MadTask]:
    """The six MAD task specs at a fidelity's sizes, in :data:`TASK_NAMES` order."""
    seq_lens = dict(fidelity.seq_lens)
    return {
        name: dataclasses.replace(
            PAPER_TASKS[name],
            seq_len=seq_lens.get(name, PAPER_TASKS[name].seq_len),
            n_train=fidelity.n_train,
            n_test=fidelity.n_test,
            n_copy=fidelity.n_copy,
            n_keys=fidelity.n_keys,
        )
        for name in TASK_NAMES
    }


@functools.lru_cache(maxsize=24)
def _dataset(task: MadTask, seed: int) -> MadData:
    return make_dataset(task, seed=seed)


def check_job(job: EvalJob) -> torch.device:
    """The checks every evaluator makes of a job (layers, split, device); returns the device.

    Raises:
        ValueError: naming the bad layer, split or device.
    """
    if not job.layers:
        raise ValueError("layers must name at least one primitive")
    for i, kind in enumerate(job.layers):
        if kind not in PRIMITIVES:
            raise ValueError(f"layers[{i}] = {kind!r} is not a primitive; allowed: {PRIMITIVES}")
    if job.split not in SPLITS:
        raise ValueError(f"unknown split {job.split!r}; expected one of {SPLITS}")
    try:
        device = torch.device(job.device)
    except RuntimeError as exc:
        raise ValueError(f"bad device {job.device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {job.device!r} requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {job.device!r}: only cpu and cuda are supported")
    return device


def _resolve(job: EvalJob) -> tuple[Fidelity, list[MadTask], torch.device]:
    """Validate a job; raises ValueError naming the problem."""
    if isinstance(job.fidelity, Fidelity):
        fid = job.fidelity
    elif job.fidelity in FIDELITIES:
        fid = FIDELITIES[job.fidelity]
    else:
        raise ValueError(f"unknown fidelity {job.fidelity!r}; expected one of {list(FIDELITIES)}")
    device = check_job(job)
    tasks = tasks_for(fid)
    if job.task == "mad":
        chosen = list(tasks.values())
    elif job.task in tasks:
        chosen = [tasks[job.task]]
    else:
        raise ValueError(f"unknown task {job.task!r}; expected 'mad' or one of {TASK_NAMES}")
    _model_config(job.layers, fid, chosen[0])  # shape errors (heads, headdim) surface here
    return fid, chosen, device


def _model_config(layers: tuple[str, ...], fid: Fidelity, task: MadTask) -> ModelConfig:
    return ModelConfig(
        layers=layers,
        d_model=fid.d_model,
        vocab_size=task.vocab_size,
        n_heads=fid.n_heads,
        d_state=fid.d_state,
        headdim=fid.headdim,
        expand=fid.expand,
        chunk_size=fid.chunk_size,
        head="compression" if task.head == "compression" else "lm",
        seq_len=task.input_len,
    )


def evaluate(
    jobs: Sequence[EvalJob],
    *,
    progress: Callable[[EvalProgress], None] | None = None,
    time_limit_s: float | None = None,
) -> list[EvalResult]:
    """Train and score every job; one result per job, in order.

    Args:
        jobs: the requests. All are validated before any training starts.
        progress: optional callback, called after every epoch of every task.
        time_limit_s: optional wall-clock limit per job; past it the job is "timeout".

    Returns:
        One :class:`EvalResult` per job. A failing job never raises.

    Raises:
        ValueError: a job names an unknown task, fidelity, primitive, split or device.
    """
    from primitives import lm_eval  # LM tasks (BabiStories, DCLM); lm_eval imports this module

    for job in jobs:
        if lm_eval.is_lm_task(job.task):
            lm_eval.resolve(job)
    resolved = [None if lm_eval.is_lm_task(job.task) else _resolve(job) for job in jobs]
    results = []
    for i, (job, mad) in enumerate(zip(jobs, resolved, strict=True)):
        if mad is None:
            results.append(
                lm_eval.evaluate_lm(i, job, progress=progress, time_limit_s=time_limit_s)
            )
        else:
            fid, tasks, device = mad
            results.append(_run_job(i, job, fid, tasks, device, progress, time_limit_s))
    return results


def _run_job(
    index: int,
    job: EvalJob,
    fid: Fidelity,
    tasks: list[MadTask],
    device: torch.device,
    progress: Callable[[EvalProgress], None] | None,
    time_limit_s: float | None,
) -> EvalResult:
    start = time.perf_counter()
    deadline = None if time_limit_s is None else start + time_limit_s
    cuda = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    cfg0 = _model_config(job.layers, fid, tasks[0])
    n_params = sum(layer_parameters(cfg0, kind) for kind in job.layers)
    per_task: dict[str, dict[str, float]] = {}
    status, error = "ok", None
    try:
        for task in tasks:
            status, error = _run_task(index, job, fid, task, device, deadline, progress, per_task)
            if status != "ok":
                break
    except torch.cuda.OutOfMemoryError as exc:
        status, error = "oom", _one_line(exc)
    except MemoryError as exc:
        status, error = "oom", f"MemoryError: {_one_line(exc)}"
    except Exception as exc:  # a failed job is an outcome, not a crash
        status, error = "error", f"{type(exc).__name__}: {_one_line(exc)}"
    finally:
        peak = _peak_mem_mb(device)
        if cuda:
            torch.cuda.empty_cache()
    score = None
    if status == "ok":
        score = sum(m["macro_acc"] for m in per_task.values()) / len(per_task)
    return EvalResult(
        job=job,
        status=status,
        score=score,
        per_task=per_task,
        wall_s=time.perf_counter() - start,
        device=device_name,
        peak_mem_mb=peak,
        error=error,
        n_params=n_params,
    )


def _run_task(
    index: int,
    job: EvalJob,
    fid: Fidelity,
    task: MadTask,
    device: torch.device,
    deadline: float | None,
    progress: Callable[[EvalProgress], None] | None,
    per_task: dict[str, dict[str, float]],
) -> tuple[str, str | None]:
    """Fit and score one task; records its metrics when it finishes. Returns (status, error)."""
    start = time.perf_counter()
    task_index = TASK_NAMES.index(task.name)
    fit, score_set = split_for(_dataset(task, MAD_DATA_SEED + job.seed), job.split)
    cfg = _model_config(job.layers, fid, task)
    torch.manual_seed(job.seed * 1000 + task_index)
    model = build_model(cfg).to(device)

    def on_epoch(epoch: int, acc: Accuracy | None) -> None:
        if progress is not None:
            macro = None if acc is None else acc.macro
            progress(
                EvalProgress(
                    job_index=index,
                    task=task.name,
                    epoch=epoch,
                    n_epochs=fid.epochs,
                    macro_acc=macro,
                )
            )

    out = fit_and_score(
        model,
        fit,
        score_set,
        fid.loop(),
        vocab_size=task.vocab_size,
        seed=job.seed * 1000 + task_index,
        deadline=deadline,
        on_epoch=on_epoch,
    )
    if out.status == "diverged":
        return "diverged", f"{task.name}: loss diverged after {out.n_steps} steps"
    if out.status == "timeout":
        return "timeout", f"{task.name}: time limit reached after {out.n_epochs} epochs"
    assert out.accuracy is not None
    per_task[task.name] = {
        "macro_acc": out.accuracy.macro,
        "token_acc": out.accuracy.token,
        "final_loss": out.final_loss,
        "loss_first": out.loss_first,
        "loss_min": out.loss_min,
        "loss_last": out.loss_last,
        "n_steps": float(out.n_steps),
        "n_epochs": float(out.n_epochs),
        "early_stopped": float(out.early_stopped),
        "n_params": float(count_parameters(cfg)),
        "wall_s": time.perf_counter() - start,
    }
    return "ok", None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _peak_mem_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: kilobytes
    return peak_kb / 1024 if math.isfinite(peak_kb) else None
