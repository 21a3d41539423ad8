"""The MAD training loop and its scoring: fit one model on one task, score it, report the curve.

The loop is lean because the search runs it thousands of times. Data sit on the device before
the first step, every epoch's shuffle is drawn up front, and step losses go into a device buffer:
the host synchronises only at divergence checks (every ``check_every`` steps and at each epoch
end) and at scoring (once per evaluation of the score set). AdamW is fused on CUDA; the
learning rate follows a cosine from ``lr`` to ``lr_min`` stepped once per epoch (MAD's
schedule); bf16 autocast applies on CUDA only.

Scoring: predictions are the argmax of the logits on every target token (target != -100).
Token accuracy is the plain fraction correct. Macro accuracy is the mean, over target classes
present in the score set, of each class's accuracy (MAD's metric). Class counts are gathered
with ``scatter_add_`` so scoring syncs once, not once per batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from primitives.mad import IGNORE_INDEX, MadSplit

__all__ = ["Accuracy", "FitOutcome", "LoopConfig", "accuracy_counts", "fit_and_score", "score"]


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """The optimisation settings of one fit (a slice of an evaluator fidelity).

    Attributes:
        epochs: passes over the fit set; the cosine schedule spans them.
        batch_size, eval_batch_size: rows per training step / per scoring forward pass.
        lr, lr_min, weight_decay: AdamW and the per-epoch cosine from lr to lr_min.
        early_stop_acc: stop once the score set's macro accuracy reaches this.
        eval_every: score every this many epochs (and always after the last one).
        check_every: steps between divergence checks inside an epoch.
        diverge_factor: a loss above this multiple of the first step's loss is divergence.
        bf16: bf16 autocast on CUDA (ignored on CPU).
    """

    epochs: int
    batch_size: int
    eval_batch_size: int
    lr: float
    lr_min: float
    weight_decay: float
    early_stop_acc: float = 0.999
    eval_every: int = 1
    check_every: int = 32
    diverge_factor: float = 10.0
    bf16: bool = True


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """Accuracy over the target tokens of a score set."""

    macro: float
    token: float


@dataclass(frozen=True, kw_only=True)
class FitOutcome:
    """What one fit produced.

    Attributes:
        status: "ok", "diverged" or "timeout".
        accuracy: the last score (None when the fit stopped before any).
        n_steps, n_epochs: optimiser steps and epochs run.
        loss_first, loss_min, loss_last: step losses (first, lowest, last).
        final_loss: mean step loss of the last epoch run.
        early_stopped: the early-stop accuracy was reached.
    """

    status: str
    accuracy: Accuracy | None
    n_steps: int
    n_epochs: int
    loss_first: float
    loss_min: float
    loss_last: float
    final_loss: float
    early_stopped: bool


def accuracy_counts(logits: Tensor, targets: Tensor, vocab_size: int) -> tuple[Tensor, Tensor]:
    """Per-class (total, correct) counts over target tokens, without a host sync.

    Args:
        logits: (B, T, V). targets: (B, T) int64 with IGNORE_INDEX where not scored.
    Returns:
        total, correct: (V,) int64; the ignored tokens go to a dropped extra bin.
    """
    scored = targets != IGNORE_INDEX  # (B, T)
    hit = scored & (logits.argmax(dim=-1) == targets)  # (B, T)
    classes = torch.where(scored, targets, vocab_size).flatten()  # (B·T,) ignored -> bin V
    hit_classes = torch.where(hit, targets, vocab_size).flatten()  # (B·T,)
    ones = torch.ones_like(classes)
    total = torch.zeros(vocab_size + 1, dtype=torch.int64, device=targets.device)
    correct = torch.zeros_like(total)
    total.scatter_add_(0, classes, ones)
    correct.scatter_add_(0, hit_classes, ones)
    return total[:vocab_size], correct[:vocab_size]


def _accuracy(total: Tensor, correct: Tensor) -> Accuracy:
    counts = torch.stack([total, correct]).cpu()  # (2, V): the one sync of a scoring pass
    total_c, correct_c = counts[0].double(), counts[1].double()
    present = total_c > 0
    if not bool(present.any()):
        return Accuracy(macro=0.0, token=0.0)
    macro = (correct_c[present] / total_c[present]).mean().item()
    token = (correct_c.sum() / total_c.sum()).item()
    return Accuracy(macro=float(macro), token=float(token))


def bf16_autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA when ``bf16`` is set; elsewhere (CPU) a no-op context."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def score(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    vocab_size: int,
    batch_size: int,
    bf16: bool = True,
) -> Accuracy:
    """Macro and token accuracy of ``model`` on (inputs, targets), both (n, T) on its device."""
    was_training = model.training
    model.eval()
    total = torch.zeros(vocab_size, dtype=torch.int64, device=targets.device)
    correct = torch.zeros_like(total)
    with bf16_autocast(inputs.device, bf16):
        for start in range(0, inputs.shape[0], batch_size):
            logits = model(inputs[start : start + batch_size])  # (b, T, V)
            t, c = accuracy_counts(logits, targets[start : start + batch_size], vocab_size)
            total += t
            correct += c
    model.train(was_training)
    return _accuracy(total, correct)


def _cosine_lr(cfg: LoopConfig, epoch: int) -> float:
    """MAD's per-epoch cosine: lr at epoch 0, lr_min after ``epochs`` epochs."""
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (
        1.0 + math.cos(math.pi * epoch / cfg.epochs)
    )


class _Diverged(Exception):
    """Raised inside the loop when a loss is non-finite or above the bound."""


def fit_and_score(
    model: nn.Module,
    fit: MadSplit,
    score_set: MadSplit,
    cfg: LoopConfig,
    *,
    vocab_size: int,
    seed: int,
    deadline: float | None = None,
    on_epoch: Callable[[int, Accuracy | None], None] | None = None,
) -> FitOutcome:
    """Train ``model`` (already on its device) on ``fit``, scoring ``score_set`` as it goes.

    Args:
        model: maps (B, T) tokens to (B, T, V) logits.
        fit, score_set: CPU or device tensors; moved to the model's device once.
        cfg: optimisation settings.
        vocab_size: V of the task (for per-class counts).
        seed: seeds the shuffle order.
        deadline: a ``time.perf_counter()`` value after which the fit stops ("timeout").
        on_epoch: called after every epoch with (epoch, accuracy if scored that epoch).

    Returns:
        The outcome; a diverged or timed-out fit carries no accuracy.
    """
    device = next(model.parameters()).device
    x, y = fit.inputs.to(device), fit.targets.to(device)  # (n, T) each
    xs, ys = score_set.inputs.to(device), score_set.targets.to(device)
    n = x.shape[0]
    batch = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    shuffle = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(n, generator=shuffle) for _ in range(cfg.epochs)])
    order = order.to(device)  # (E, n): every epoch's permutation, one copy
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )
    losses = torch.zeros(cfg.epochs * steps_per_epoch, device=device)  # step losses, on device
    step, checked, bound = 0, 0, math.inf
    status, acc, early, epochs_run = "ok", None, False, 0

    def check() -> None:
        nonlocal checked, bound
        if step == checked:
            return
        worst = losses[checked:step].max().item()  # host sync; NaN propagates through max
        if math.isinf(bound):
            first = losses[0].item()
            bound = min(cfg.diverge_factor * first, 1e4) if math.isfinite(first) else -math.inf
        checked = step
        if not math.isfinite(worst) or worst > bound:
            raise _Diverged

    model.train()
    try:
        for epoch in range(cfg.epochs):
            for group in opt.param_groups:
                group["lr"] = _cosine_lr(cfg, epoch)
            for b in range(steps_per_epoch):
                idx = order[epoch, b * batch : (b + 1) * batch]  # (batch,)
                with bf16_autocast(device, cfg.bf16):
                    logits = model(x[idx])  # (batch, T, V)
                loss = F.cross_entropy(
                    logits.float().flatten(0, 1),  # (batch·T, V)
                    y[idx].flatten(),  # (batch·T,)
                    ignore_index=IGNORE_INDEX,
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                losses[step] = loss.detach()
                step += 1
                if step % cfg.check_every == 0:
                    check()
            check()
            epochs_run = epoch + 1
            scored = None
            if epochs_run % cfg.eval_every == 0 or epochs_run == cfg.epochs:
                scored = acc = score(
                    model,
                    xs,
                    ys,
                    vocab_size=vocab_size,
                    batch_size=cfg.eval_batch_size,
                    bf16=cfg.bf16,
                )
            if on_epoch is not None:
                on_epoch(epoch, scored)
            if scored is not None and scored.macro >= cfg.early_stop_acc:
                early = True
                break
            if deadline is not None and time.perf_counter() > deadline and epochs_run < cfg.epochs:
                status, acc = "timeout", None
                break
    except _Diverged:
        status, acc = "diverged", None
    return _outcome(losses[:step], status, acc, step, epochs_run, steps_per_epoch, early)


def _outcome(
    losses: Tensor,
    status: str,
    acc: Accuracy | None,
    n_steps: int,
    n_epochs: int,
    steps_per_epoch: int,
    early: bool,
) -> FitOutcome:
    curve = losses.float().cpu()
    nan = float("nan")
    if n_steps == 0:
        return FitOutcome(
            status=status,
            accuracy=acc,
            n_steps=0,
            n_epochs=n_epochs,
            loss_first=nan,
            loss_min=nan,
            loss_last=nan,
            final_loss=nan,
            early_stopped=early,
        )
    finite = curve[torch.isfinite(curve)]
    last_epoch = curve[(n_steps - 1) // steps_per_epoch * steps_per_epoch :]
    return FitOutcome(
        status=status,
        accuracy=acc,
        n_steps=n_steps,
        n_epochs=n_epochs,
        loss_first=float(curve[0]),
        loss_min=float(finite.min()) if finite.numel() else nan,
        loss_last=float(curve[-1]),
        final_loss=float(last_epoch.mean()),
        early_stopped=early,
    )
