"""Short pretraining of an extrapolated model: bf16, AdamW, warmup + cosine, clipping, logs.

``pretrain(model_cfg, corpus, cfg, device=..., out_dir=...)`` builds the model of a
:class:`~primitives.model.ModelConfig` (e.g. what ``aira extrapolate --format json`` writes) on
the device, trains it with :func:`primitives.lm_train.train_lm` for ``cfg.tokens`` tokens of the
corpus's train rows (cycling epochs when the corpus is shorter), scores the held-out rows, and
writes under ``out_dir``:

- ``log.jsonl``: one JSON object per log point: step, loss (mean since the previous point), lr,
  grad_norm (mean pre-clip global norm), tokens, elapsed_s, tokens_per_s, mfu;
- ``summary.json``: the :class:`PretrainReport` (also returned);
- ``model.json`` and ``tokenizer.json``: what was trained, to rebuild it.

Throughput. ``tokens_per_s`` in the report is measured after the first log point, so CUDA start-up
and compilation are not counted. MFU = 3 × forward FLOPs per token
(:func:`primitives.counting.count_flops`, dense attention) × tokens/s ÷ the device's dense bf16
peak (:func:`peak_flops`; None when the device is not known, e.g. the CPU).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from primitives.counting import count_flops, count_parameters
from primitives.lm_data import Corpus
from primitives.lm_train import LMTrainConfig, StepLog, eval_loss, train_lm
from primitives.model import ModelConfig, build_model

__all__ = ["PEAK_BF16_FLOPS", "PretrainConfig", "PretrainReport", "peak_flops", "pretrain"]

PEAK_BF16_FLOPS: dict[str, float] = {
    # Dense bf16 tensor-core peaks from the vendor's data sheets (SXM parts).
    "H200": 989.4e12,
    "H100 PCIe": 756.0e12,
    "H100": 989.4e12,
    "A100": 312.0e12,
}


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device named ``device_name`` (None if unknown)."""
    for key, value in PEAK_BF16_FLOPS.items():  # most specific names first
        if all(part in device_name for part in key.split()):
            return value
    return None


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    """Settings of one pretraining run.

    Attributes:
        tokens: training tokens; steps = tokens // (batch_size × seq_len), at least 1.
        seq_len, batch_size: tokens a row predicts, rows a step.
        lr, lr_min, warmup_frac: peak lr, final lr, warmup as a fraction of the steps.
        weight_decay, grad_clip: AdamW decay on matrices, global-norm clip.
        bf16: bf16 autocast on CUDA. compile: ``torch.compile`` the model first.
        log_every: steps between log points. eval_batch_size: rows a scoring forward pass.
        seed: initialisation and data order.
    """

    tokens: int
    seq_len: int = 2048
    batch_size: int = 4
    lr: float = 3e-4
    lr_min: float = 3e-5
    warmup_frac: float = 0.05
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    bf16: bool = True
    compile: bool = False
    log_every: int = 10
    eval_batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.tokens < 1 or self.seq_len < 1 or self.batch_size < 1:
            raise ValueError("tokens, seq_len and batch_size must be positive")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.batch_size * self.seq_len))

    def train_config(self) -> LMTrainConfig:
        return LMTrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_min=self.lr_min,
            warmup_steps=int(self.warmup_frac * self.steps),
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            bf16=self.bf16,
            log_every=self.log_every,
        )


@dataclass(frozen=True, kw_only=True)
class PretrainReport:
    """What a pretraining run did (``summary.json``)."""

    status: str
    device: str
    n_params: int
    flops_per_token: float
    steps: int
    tokens: int
    batch_size: int
    seq_len: int
    wall_s: float
    train_s: float
    tokens_per_s: float
    mfu: float | None
    peak_flops: float | None
    loss_first: float
    loss_last: float
    final_loss: float
    heldout_loss: float | None
    heldout_bits_per_byte: float | None
    peak_mem_gb: float | None
    vocab_size: int
    tokenizer_vocab: int
    compile: bool


def pretrain(
    model_cfg: ModelConfig,
    corpus: Corpus,
    cfg: PretrainConfig,
    *,
    device: str,
    out_dir: Path,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> PretrainReport:
    """Pretrain ``model_cfg`` on ``corpus`` (module docstring); writes the logs under ``out_dir``.

    Raises:
        ValueError: the tokenizer has more ids than the model's vocabulary, the corpus has no
            train rows, or its rows are shorter than ``cfg.seq_len``.
    """
    if corpus.tokenizer.vocab_size > model_cfg.vocab_size:
        raise ValueError(
            f"the tokenizer has {corpus.tokenizer.vocab_size} ids but the model's vocab_size is"
            f" {model_cfg.vocab_size}"
        )
    if corpus.train.shape[0] == 0 or corpus.seq_len != cfg.seq_len:
        raise ValueError(
            f"need train rows of {cfg.seq_len} tokens, got {tuple(corpus.train.shape)}"
        )
    start = time.perf_counter()
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    peak = peak_flops(name) if cuda else None
    flops_per_token = count_flops(model_cfg, cfg.seq_len) / cfg.seq_len
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.json").write_text(model_cfg.to_json() + "\n")
    (out_dir / "tokenizer.json").write_text(corpus.tokenizer.to_json() + "\n")
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    torch.manual_seed(cfg.seed)
    with dev:  # parameters are created on the device, not copied there
        model = build_model(model_cfg)
    step_model: Any = torch.compile(model) if cfg.compile else model
    steady: list[tuple[int, float]] = []  # (tokens, elapsed_s) at each log point

    with (out_dir / "log.jsonl").open("w") as log_file:

        def log(entry: StepLog) -> None:
            steady.append((entry.tokens, entry.elapsed_s))
            mfu = None if peak is None else 3 * flops_per_token * entry.tokens_per_s / peak
            record = {**asdict(entry), "mfu": mfu}
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            if on_log is not None:
                on_log(record)

        out = train_lm(step_model, corpus.train, cfg.train_config(), seed=cfg.seed, on_log=log)
    heldout = None
    if corpus.test.shape[0] and out.status == "ok":
        sizes = torch.tensor(corpus.tokenizer.token_bytes, dtype=torch.int64)  # (V_tok,)
        padded = torch.zeros(model_cfg.vocab_size, dtype=torch.int64)  # (V,)
        padded[: sizes.shape[0]] = sizes
        heldout = eval_loss(
            step_model, corpus.test, batch_size=cfg.eval_batch_size, token_bytes=padded,
            bf16=cfg.bf16,
        )  # fmt: skip
    if len(steady) >= 2:
        tokens_per_s = (steady[-1][0] - steady[0][0]) / max(steady[-1][1] - steady[0][1], 1e-9)
    else:
        tokens_per_s = out.n_tokens / max(out.train_s, 1e-9)
    report = PretrainReport(
        status=out.status,
        device=name,
        n_params=count_parameters(model_cfg),
        flops_per_token=flops_per_token,
        steps=out.n_steps,
        tokens=out.n_tokens,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        wall_s=time.perf_counter() - start,
        train_s=out.train_s,
        tokens_per_s=tokens_per_s,
        mfu=None if peak is None else 3 * flops_per_token * tokens_per_s / peak,
        peak_flops=peak,
        loss_first=out.loss_first,
        loss_last=out.loss_last,
        final_loss=out.final_loss,
        heldout_loss=None if heldout is None else heldout.loss,
        heldout_bits_per_byte=None if heldout is None else _finite(heldout.bits_per_byte),
        peak_mem_gb=torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None,
        vocab_size=model_cfg.vocab_size,
        tokenizer_vocab=corpus.tokenizer.vocab_size,
        compile=cfg.compile,
    )
    (out_dir / "summary.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
