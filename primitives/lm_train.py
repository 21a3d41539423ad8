"""The language-model training loop shared by the LM proxy evaluator and ``aira pretrain``.

One step: a batch of rows (B, T+1) is drawn from an epoch permutation, split into inputs
(B, T) and next-token targets (B, T), and the mean cross-entropy is minimised with AdamW
(decoupled weight decay on matrices only; fused on CUDA), a linear warmup then a cosine from
``lr`` to ``lr_min`` (stepped every step), optional gradient-norm clipping and bf16 autocast on
CUDA. Rows sit on the device as int32 from the start. Step losses go into a device buffer: the
host syncs only at divergence checks (every ``check_every`` steps) and at log points.

Failures are outcomes: a non-finite loss, or one above ``diverge_factor`` × the first step's
(or 1e4), ends the fit as "diverged"; a deadline passed ends it as "timeout".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from primitives.training import bf16_autocast

__all__ = [
    "LMTrainConfig",
    "LossStats",
    "StepLog",
    "TrainOutcome",
    "eval_loss",
    "lr_at",
    "train_lm",
]


@dataclass(frozen=True, kw_only=True)
class LMTrainConfig:
    """Optimisation settings of one LM fit.

    Attributes:
        steps: optimiser steps; the schedule spans them. batch_size: rows a step.
        lr, lr_min, warmup_steps: linear warmup from 0 to ``lr``, then cosine to ``lr_min``.
        weight_decay, betas: AdamW (decay on parameters of 2 or more dimensions only).
        grad_clip: clip the global gradient norm to this (None: no clipping).
        bf16: bf16 autocast on CUDA (ignored on the CPU).
        check_every, diverge_factor: divergence checks (module docstring).
        log_every: report a :class:`StepLog` every this many steps (0: never).
    """

    steps: int
    batch_size: int
    lr: float
    lr_min: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    bf16: bool = True
    check_every: int = 16
    diverge_factor: float = 10.0
    log_every: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}"
            )
        if not (self.lr > 0 and 0 <= self.lr_min <= self.lr):
            raise ValueError(f"need lr > 0 and 0 <= lr_min <= lr, got {self.lr}, {self.lr_min}")
        if self.warmup_steps < 0 or self.check_every < 1 or self.log_every < 0:
            raise ValueError("warmup_steps and log_every must be >= 0, check_every >= 1")


@dataclass(frozen=True, kw_only=True)
class StepLog:
    """One log point: means over the steps since the previous one."""

    step: int
    loss: float
    lr: float
    grad_norm: float | None
    tokens: int
    elapsed_s: float
    tokens_per_s: float


@dataclass(frozen=True, kw_only=True)
class TrainOutcome:
    """What a fit did. ``final_loss`` is the mean step loss of the last tenth of the steps."""

    status: str
    n_steps: int
    n_tokens: int
    loss_first: float
    loss_min: float
    loss_last: float
    final_loss: float
    train_s: float


@dataclass(frozen=True, kw_only=True)
class LossStats:
    """Cross-entropy over every target token of a row set."""

    loss: float  # nats per token
    bits_per_byte: float
    n_tokens: int


def lr_at(cfg: LMTrainConfig, step: int) -> float:
    """Learning rate of step ``step`` (0-based): warmup, then cosine to ``lr_min``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _optimizer(model: nn.Module, cfg: LMTrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=device.type == "cuda")


class _Diverged(Exception):
    """A loss was non-finite or above the bound."""


def train_lm(
    model: nn.Module,
    rows: Tensor,
    cfg: LMTrainConfig,
    *,
    seed: int,
    deadline: float | None = None,
    on_log: Callable[[StepLog], None] | None = None,
) -> TrainOutcome:
    """Fit ``model`` (already on its device) to next-token prediction on ``rows``.

    Args:
        model: maps tokens (B, T) to logits (B, T, V).
        rows: (n, T+1) integer token rows (CPU or device); moved to the device once as int32.
        cfg: the optimisation settings.
        seed: seeds the order in which rows are drawn (epochs of permutations).
        deadline: a ``time.perf_counter()`` value; past it the fit stops as "timeout".
        on_log: called every ``cfg.log_every`` steps.
    """
    device = next(model.parameters()).device
    data = rows.to(device=device, dtype=torch.int32)  # (n, T+1)
    n, seq_len = data.shape[0], data.shape[1] - 1
    if n == 0 or seq_len < 1:
        raise ValueError(f"train_lm needs at least one row of 2+ tokens, got {tuple(rows.shape)}")
    batch = min(cfg.batch_size, n)
    per_epoch = n // batch  # full batches only
    gen = torch.Generator().manual_seed(seed)
    opt = _optimizer(model, cfg, device)
    losses = torch.zeros(cfg.steps, device=device)  # step losses, on device
    norms = torch.zeros(cfg.steps, device=device)
    status, checked, bound, done = "ok", 0, math.inf, 0  # done: steps finished
    order = torch.empty(0, dtype=torch.int64)
    start = last_time = time.perf_counter()
    last_done = 0

    def check() -> None:
        nonlocal checked, bound
        if done == checked:
            return
        worst = losses[checked:done].max().item()  # host sync; NaN propagates through max
        if math.isinf(bound):
            first = losses[0].item()
            bound = min(cfg.diverge_factor * first, 1e4) if math.isfinite(first) else -math.inf
        checked = done
        if not math.isfinite(worst) or worst > bound:
            raise _Diverged

    def log() -> None:
        nonlocal last_time, last_done
        assert on_log is not None
        now = time.perf_counter()
        window = slice(last_done, done)
        on_log(
            StepLog(
                step=done,
                loss=losses[window].mean().item(),
                lr=lr_at(cfg, done - 1),
                grad_norm=norms[window].mean().item() if cfg.grad_clip is not None else None,
                tokens=done * batch * seq_len,
                elapsed_s=now - start,
                tokens_per_s=(done - last_done) * batch * seq_len / max(now - last_time, 1e-9),
            )
        )
        last_time, last_done = now, done

    model.train()
    try:
        for step in range(cfg.steps):
            b = step % per_epoch
            if b == 0:
                order = torch.randperm(n, generator=gen).to(device)  # (n,)
            x = data[order[b * batch : (b + 1) * batch]].long()  # (B, T+1)
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            with bf16_autocast(device, cfg.bf16):
                logits = model(x[:, :-1])  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())  # (B·T, V)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if cfg.grad_clip is not None:
                norms[step] = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses[step] = loss.detach()
            done = step + 1
            if done % cfg.check_every == 0:
                check()
            if on_log is not None and cfg.log_every and done % cfg.log_every == 0:
                log()
            if deadline is not None and done < cfg.steps and time.perf_counter() > deadline:
                status = "timeout"
                break
        check()
        if on_log is not None and cfg.log_every and done > last_done:
            log()
    except _Diverged:
        status = "diverged"
    return _outcome(losses[:done], status, batch * seq_len, time.perf_counter() - start)


def _outcome(losses: Tensor, status: str, tokens_per_step: int, train_s: float) -> TrainOutcome:
    curve = losses.float().cpu()
    n = int(curve.numel())
    nan = float("nan")
    finite = curve[torch.isfinite(curve)]
    tail = curve[n - max(1, n // 10) :] if n else curve
    return TrainOutcome(
        status=status,
        n_steps=n,
        n_tokens=n * tokens_per_step,
        loss_first=float(curve[0]) if n else nan,
        loss_min=float(finite.min()) if finite.numel() else nan,
        loss_last=float(curve[-1]) if n else nan,
        final_loss=float(tail.mean()) if n else nan,
        train_s=train_s,
    )


@torch.no_grad()
def eval_loss(
    model: nn.Module,
    rows: Tensor,
    *,
    batch_size: int,
    token_bytes: Tensor | None = None,
    bf16: bool = True,
) -> LossStats:
    """Mean next-token cross-entropy of ``model`` over every target of ``rows`` (n, T+1).

    ``token_bytes`` (V,) gives each id's length in bytes, for bits per byte (NaN without it).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    n_bytes = torch.zeros((), dtype=torch.int64, device=device)
    sizes = None if token_bytes is None else token_bytes.to(device)
    n_tokens = 0
    for start in range(0, rows.shape[0], batch_size):
        x = rows[start : start + batch_size].to(device).long()  # (b, T+1)
        with bf16_autocast(device, bf16):
            logits = model(x[:, :-1])  # (b, T, V)
        targets = x[:, 1:]  # (b, T)
        total += F.cross_entropy(
            logits.float().flatten(0, 1), targets.flatten(), reduction="sum"
        ).double()
        if sizes is not None:
            n_bytes += sizes[targets].sum()
        n_tokens += targets.numel()
    model.train(was_training)
    nats = total.item()  # the one host sync
    bytes_total = int(n_bytes.item()) if sizes is not None else 0
    bpb = nats / (math.log(2) * bytes_total) if bytes_total else float("nan")
    return LossStats(loss=nats / max(n_tokens, 1), bits_per_byte=bpb, n_tokens=n_tokens)
