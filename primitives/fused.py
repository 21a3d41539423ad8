"""Several evaluation jobs trained in one GPU step: stacked weights, one batch, one optimiser.

A 16-layer width-128 MAD proxy is launch-bound on a GPU (FACTS §10): one candidate at a time
leaves the card ~99 % idle. :class:`FusedArrangements` trains K candidates of the same depth and
shape (their arrangements may differ) on one task together. The residual streams are one
tensor (K, B, T, D); at each layer the candidates that hold primitive p there run together with
their weights stacked on a leading K_p axis (batched matrix products, SDPA over K_p·B
sequences, Mamba2's SSD as batched products when the sequence is one chunk, else with the
candidates folded into the chunked scan's heads). Where a layer's candidates differ, the stream is
reordered once (one gather, its gradient the inverse gather) so that each group is a contiguous
slice, and the groups' outputs are concatenated in that order; a layer of one primitive keeps the
order it finds, its weights stacked in that order, so uniform arrangements move nothing.

Equivalence with :func:`primitives.evaluator.evaluate`:

- every candidate's slice is COPIED from the naive model built with the same seed, so both
  start from the same weights;
- jobs fused together share task, fidelity and split; each candidate trains on its own seed's
  data in its own seed's shuffle order (seeded from (job seed, task index)), as it would alone.
  Candidates of one seed share a lane: one batch per step for all of them (the common case,
  one seed, feeds a single shared batch); with several seeds each candidate gets its lane's;
- the loss is the sum over candidates of each candidate's mean token loss; parameters are
  disjoint, so each candidate receives exactly its own gradient (a NaN in one candidate does not
  reach the others' gradients), and AdamW is elementwise, so the stacked update is the
  per-candidate update; the per-epoch cosine schedule is the same;
- divergence checks, scoring, early stopping and timeouts are per candidate at the same steps
  and epochs; a candidate that stops early keeps the outcome it stopped with (its slice keeps
  training until the whole group stops, which changes nothing reported).

On the CPU in fp32 fused and naive results agree to rounding; on CUDA with bf16 autocast they
differ by bf16 rounding in a different order (batched vs. single products), i.e. within the
seed-to-seed spread (bench/eval_throughput.py measures both).

:func:`evaluate_fused` is an opt-in drop-in for :func:`evaluate` on MAD jobs: it groups
compatible jobs and returns the same :class:`EvalResult` records. ``evaluate`` is unchanged.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from primitives.attention import apply_rotary, rotary_cos_sin
from primitives.counting import count_parameters, layer_parameters
from primitives.evaluator import (
    EvalJob,
    EvalResult,
    Fidelity,
    _dataset,
    _model_config,
    _one_line,
    _peak_mem_mb,
    _resolve,
)
from primitives.kernels.causal_conv import causal_conv_silu, causal_conv_supported
from primitives.kernels.ssd import ssd_supported, ssd_xbc
from primitives.kernels.swiglu import swiglu_block, swiglu_supported
from primitives.kernels.tiny_attention import tiny_attention, tiny_attention_supported
from primitives.mad import IGNORE_INDEX, MAD_DATA_SEED, TASK_NAMES, MadSplit, MadTask, split_for
from primitives.mamba2 import gated_rms_norm, ssd_chunked, ssd_one_chunk
from primitives.model import ArrangementModel, ModelConfig, build_model
from primitives.training import (
    Accuracy,
    FitOutcome,
    LoopConfig,
    _cosine_lr,
    _outcome,
    bf16_autocast,
)

__all__ = [
    "FusedArrangements",
    "GraphedTrainStep",
    "capturable_adamw",
    "evaluate_fused",
    "fit_and_score_fused",
    "fused_models",
    "fused_train_step",
    "fused_trainer",
    "set_lr",
]

DEFAULT_MAX_K = 32
ONE_CHUNK_MAX_LEN = 128
"""Longest sequence whose fused Mamba2 runs :func:`ssd_one_chunk`. Its (T, T) scores are per
head and its decay is fp32, where mamba-ssm keeps (T, T) per group and forms the decay inside
its kernels: at T = 256, K = 32, batch 128 and 4 heads one layer's fp32 decay alone is 4.3 GB.
Measured at T = 127 (bench/results, run 6); longer sequences take the chunked scan."""


def _bmm_t(x: Tensor, w: Tensor) -> Tensor:
    """Per-candidate x @ wᵀ. x (K, B, T, I), w (K, O, I) -> (K, B, T, O)."""
    k, b, t, i = x.shape
    out = torch.bmm(x.reshape(k, b * t, i), w.transpose(1, 2))  # (K, B·T, O)
    return out.view(k, b, t, w.shape[1])  # (K, B, T, O)


class _ChannelsFirstProduct(torch.autograd.Function):
    """w xᵀ for a channels-first result whose input gradient comes out row-major.

    autograd's own backward of ``torch.bmm(w, x.transpose(1, 2))`` forms dx as wᵀ g, (K, I, N),
    and hands the norm before it a transposed view of that; the norm's compiled backward then
    reads the (K, N, I) gradient across its rows. Here dx is gᵀ w, (K, N, I) in rows, from the
    same cuBLAS product with its operands' transposes swapped.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(w, x)
        return torch.bmm(w, x.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        w, x = ctx.saved_tensors
        return torch.bmm(grad, x), torch.bmm(grad.transpose(1, 2), w)


class _FromChannelsFirstProduct(torch.autograd.Function):
    """yᵀ wᵀ from a channels-first y, whose gradient comes out channels-first too.

    autograd's own backward of ``torch.bmm(y.transpose(1, 2), w.transpose(1, 2))`` forms dy as
    g w, (K, N, I), and hands the kernel that made y a transposed view of it. Here dy is wᵀ gᵀ,
    (K, I, N) in y's own layout, from the same cuBLAS product with its operands swapped.
    """

    @staticmethod
    def forward(ctx: Any, y: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(y, w)
        return torch.bmm(y.transpose(1, 2), w.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        y, w = ctx.saved_tensors
        g_t = grad.transpose(1, 2)  # (K, O, N)
        return torch.bmm(w.transpose(1, 2), g_t), torch.bmm(g_t, y.transpose(1, 2))


def _layout_product(
    fn: type[torch.autograd.Function], a: Tensor, b: Tensor, like: Tensor
) -> Tensor:
    """``fn`` (:class:`_ChannelsFirstProduct` or :class:`_FromChannelsFirstProduct`) on a and b
    cast to the products' dtype on ``like``, the activation: the Function's backward runs
    outside autocast, so its operands must already share a dtype."""
    dtype = _products_dtype(like)
    out = fn.apply(a.to(dtype), b.to(dtype))  # type: ignore[no-untyped-call]
    return cast(Tensor, out)


def _products_dtype(x: Tensor) -> torch.dtype:
    """The dtype the batched products take on x: autocast's when it is on, else x's own (what
    a kernel replacing them must run in)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def half_residual() -> bool:
    """Whether the residual stream runs in autocast's dtype (bf16) rather than fp32 when
    autocast is on (the default; ``AIRA_HALF_RESIDUAL=0`` keeps it fp32). Every block's norm and
    residual add, forward and backward, then move half the bytes; the norms still compute in
    fp32. On an H200 it took the K = 32 step of (mA M)x8 from 52.0 to 48.2 ms and of (Mb M)x8
    from 85.3 to 81.0 ms, with fused and naive scores still within their seed spread
    (bench/results/eval_throughput-nvidia-h200-runs.log, stop 15)."""
    return os.environ.get("AIRA_HALF_RESIDUAL", "1") != "0"


ONE_HOT_MAX_VOCAB = 1024
"""The largest vocabulary :func:`_embed` looks up as a one-hot product."""


def _embed(table: Tensor, tokens: Tensor) -> Tensor:
    """Each candidate's rows of its own table. table (K, V, D); tokens (B, T) shared or
    (K, B, T) per candidate -> (K, B, T, D).

    With the bf16 stream (:func:`half_residual`) and a vocabulary of at most
    :data:`ONE_HOT_MAX_VOCAB` (MAD's tasks have 16 to 256) the lookup is a product with the
    tokens' one-hot rows, in autocast's dtype: the same rounded rows as a lookup then a cast, and
    a backward that is one batched product (fp32 accumulation) instead of an indexed scatter of
    the (K, B·T, D) gradient. Otherwise a lookup, cast to the stream's dtype.
    """
    k, v, _ = table.shape
    dtype = _products_dtype(table)
    half = half_residual() and dtype != table.dtype
    if half and v <= ONE_HOT_MAX_VOCAB:
        codes = torch.arange(v, device=tokens.device)
        one_hot = (tokens[..., None] == codes).to(dtype)  # (..., B, T, V)
        if tokens.dim() == 2:
            one_hot = one_hot.expand(k, *one_hot.shape)  # (K, B, T, V), a view
        return torch.matmul(one_hot.flatten(1, 2), table).view(k, *tokens.shape[-2:], -1)
    if tokens.dim() == 3:  # candidate k reads its own rows of its own table
        slots = torch.arange(k, device=tokens.device)[:, None, None]  # (K, 1, 1)
        x = table[slots, tokens]  # (K, B, T, D)
    else:
        x = table[:, tokens]  # (K, B, T, D)
    return x.to(dtype) if half else x


def _logits(x: Tensor, norm: Tensor, head_w: Tensor, eps: float) -> Tensor:
    """The final norm and the head. x (K, B, T, D), norm (K, D), head_w (K, V, D) ->
    (K, B, T, V)."""
    return _bmm_t(_rms(x, eps), _folded(head_w, norm))


def _rms(x: Tensor, eps: float) -> Tensor:
    """RMSNorm without its weight (:func:`_folded` puts it in the product that follows).
    x (..., D) -> (..., D)."""
    return F.rms_norm(x, (x.shape[-1],), eps=eps)


def _folded(w: Tensor, norm: Tensor) -> Tensor:
    """A product's weight with the preceding norm's weight folded into its input axis:
    (x̂ ⊙ norm) wᵀ = x̂ (w ⊙ norm)ᵀ. w (K, O, D), norm (K, D) -> (K, O, D).

    The norm's weight then costs a (K, O, D) product on the weights instead of a pass over the
    (K, B, T, D) stream, and its gradient a sum over O of the small dL/dw ⊙ w instead of a
    reduction over every token of dL/dn ⊙ x̂ (a second read of the stream and its gradient in the
    backward pass).
    """
    return w * norm[:, None, :]


def _stack(tensors: list[Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach().clone() for t in tensors]))  # (K, ...)


class _StackedMixer(nn.Module):
    """One primitive at one layer for K_p candidates (pre-norm residual block, stacked)."""

    def __init__(self, blocks: list[Any], eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.compiled = False
        self.norm = _stack([blk.norm.weight for blk in blocks])

    def params(self) -> tuple[Tensor, ...]:
        """The tensors :meth:`block` reads, the norm weight first."""
        raise NotImplementedError

    def consts(self, x: Tensor) -> tuple[Any, ...]:
        """The Python scalars :meth:`block` reads, eps first."""
        raise NotImplementedError

    @staticmethod
    def block(x: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]) -> Tensor:
        """The stacked block as a pure function (so one compiled graph serves every layer).
        Mamba2 also overrides :meth:`forward`: sequences longer than a chunk take its
        three-part path."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (K_p, B, T, D). Returns: the block output x + mixer(norm(x)), same shape."""
        fn = _compiled_fn(type(self).block, self.compiled)
        return fn(x, (self.norm, *self.params()), self.consts(x))

    def export(self, slot: int, block: Any) -> None:
        """Copy candidate ``slot``'s weights back into a naive Block."""
        with torch.no_grad():
            block.norm.weight.copy_(self.norm[slot])


class _StackedAttention(_StackedMixer):
    def __init__(self, blocks: list[Any], eps: float) -> None:
        super().__init__(blocks, eps)
        att = [blk.mixer for blk in blocks]
        self.cfg = att[0].cfg
        # qkv (K, (H + 2G)·P, D): q, k and v projections concatenated on the output axis
        self.qkv = _stack(
            [torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]) for a in att]
        )
        self.o = _stack([a.o_proj.weight for a in att])  # (K, D, H·P)

    def params(self) -> tuple[Tensor, ...]:
        return (self.qkv, self.o)

    def consts(self, x: Tensor) -> tuple[Any, ...]:
        c = self.cfg
        tiny = tiny_attention_supported(x.shape[2], c.head_dim, x.device)
        return (self.eps, c.n_heads, c.kv_heads, c.head_dim, c.rope_theta, tiny)

    @staticmethod
    def block(x_in: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]) -> Tensor:
        norm, qkv_w, o_w = prm
        eps, h, g, p, theta, tiny = cst
        x = _rms(x_in, eps)  # (K, B, T, D)
        qkv_w = _folded(qkv_w, norm)  # (K, (H + 2G)·P, D)
        k, b, t, d = x.shape
        if tiny:  # the Triton kernel reads the projection channels-first, RoPE applied inside
            rows = x.reshape(k, b * t, d)
            qkv_t = _layout_product(_ChannelsFirstProduct, qkv_w, rows, x)  # (K, C, B·T)
            y_t = tiny_attention(qkv_t, seq_len=t, n_heads=h, kv_heads=g, rope_theta=theta)
            out = _layout_product(_FromChannelsFirstProduct, y_t, o_w, x)  # (K, B·T, D)
            return x_in + out.view(k, b, t, d)
        qkv = _bmm_t(x, qkv_w)  # (K, B, T, (H + 2G)·P)
        q, kk, v = torch.split(qkv, [h * p, g * p, g * p], dim=-1)
        q = q.reshape(k * b, t, h, p).transpose(1, 2)  # (K·B, H, T, P)
        kk = kk.reshape(k * b, t, g, p).transpose(1, 2)  # (K·B, G, T, P)
        v = v.reshape(k * b, t, g, p).transpose(1, 2)  # (K·B, G, T, P)
        cos, sin = rotary_cos_sin(t, p, theta, device=x.device, dtype=q.dtype)
        q, kk = apply_rotary(q, cos, sin), apply_rotary(kk, cos, sin)
        if g != h:
            kk = kk.repeat_interleave(h // g, dim=1)  # (K·B, H, T, P)
            v = v.repeat_interleave(h // g, dim=1)  # (K·B, H, T, P)
        y = F.scaled_dot_product_attention(q, kk, v, is_causal=True)  # (K·B, H, T, P)
        y = y.transpose(1, 2).reshape(k, b, t, h * p)  # (K, B, T, H·P)
        return x_in + _bmm_t(y, o_w)  # (K, B, T, D)

    def export(self, slot: int, block: Any) -> None:
        super().export(slot, block)
        a = block.mixer
        hp, gp = self.cfg.n_heads * self.cfg.head_dim, self.cfg.kv_heads * self.cfg.head_dim
        with torch.no_grad():
            q, kk, v = torch.split(self.qkv[slot], [hp, gp, gp])  # (H·P, D), (G·P, D) x2
            a.q_proj.weight.copy_(q)
            a.k_proj.weight.copy_(kk)
            a.v_proj.weight.copy_(v)
            a.o_proj.weight.copy_(self.o[slot])


class _StackedMLP(_StackedMixer):
    def __init__(self, blocks: list[Any], eps: float) -> None:
        super().__init__(blocks, eps)
        mlps = [blk.mixer for blk in blocks]
        self.hidden = mlps[0].cfg.hidden
        # w13 (K, 2F, D): gate w1 then up w3; w2 (K, D, F)
        self.w13 = _stack([torch.cat([m.w1.weight, m.w3.weight]) for m in mlps])
        self.w2 = _stack([m.w2.weight for m in mlps])

    def params(self) -> tuple[Tensor, ...]:
        return (self.w13, self.w2)

    def consts(self, x: Tensor) -> tuple[Any, ...]:
        # the Triton kernels' dtype (the products' one), or None
        dtype = _products_dtype(x)
        return (self.eps, dtype if swiglu_supported(x.device, x.shape[-1], dtype) else None)

    @staticmethod
    def block(x_in: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]) -> Tensor:
        norm, w13, w2 = prm
        eps, kernel_dtype = cst
        if kernel_dtype is not None:  # norm, gate and up in registers, residual added (Triton)
            k, b, t, d = x_in.shape
            rows = x_in.reshape(k, b * t, d)
            out = swiglu_block(rows, norm, w13.to(kernel_dtype), w2.to(kernel_dtype), eps)
            return out.view(k, b, t, d)
        x = _rms(x_in, eps)  # (K, B, T, D)
        gate, up = _bmm_t(x, _folded(w13, norm)).chunk(2, dim=-1)  # (K, B, T, F) each
        return x_in + _bmm_t(F.silu(gate) * up, w2)  # (K, B, T, D)

    def export(self, slot: int, block: Any) -> None:
        super().export(slot, block)
        m = block.mixer
        with torch.no_grad():
            w1, w3 = self.w13[slot].chunk(2)  # (F, D) each
            m.w1.weight.copy_(w1)
            m.w3.weight.copy_(w3)
            m.w2.weight.copy_(self.w2[slot])


class _StackedMamba(_StackedMixer):
    _NAMES = ("in_proj", "conv_w", "conv_b", "dt_bias", "A_log", "D", "gnorm", "out_proj")

    def __init__(self, blocks: list[Any], eps: float) -> None:
        super().__init__(blocks, eps)
        mbs = [blk.mixer for blk in blocks]
        self.cfg = mbs[0].cfg
        self.in_proj = _stack([m.in_proj.weight for m in mbs])
        self.conv_w = _stack([m.conv1d.weight for m in mbs])  # (K, C, 1, W)
        self.conv_b = _stack([m.conv1d.bias for m in mbs])  # (K, C)
        self.dt_bias = _stack([m.dt_bias for m in mbs])  # (K, H)
        self.A_log = _stack([m.A_log for m in mbs])  # (K, H)
        self.D = _stack([m.D for m in mbs])  # (K, H)
        self.gnorm = _stack([m.norm.weight for m in mbs])  # (K, E)
        self.out_proj = _stack([m.out_proj.weight for m in mbs])

    def _use_triton(self, x: Tensor) -> bool:
        from primitives.kernels.mamba_ssm import mamba_ssm_available

        if self.cfg.impl == "torch" or not x.is_cuda:
            return False
        return self.cfg.impl == "triton" or mamba_ssm_available()

    def params(self) -> tuple[Tensor, ...]:
        return tuple(getattr(self, name) for name in self._NAMES)

    def consts(self, x: Tensor) -> tuple[Any, ...]:
        c = self.cfg
        dims = (c.nheads, c.headdim, c.ngroups, c.d_state, c.d_inner, c.conv_dim, c.d_conv)
        # a sequence within one chunk is one chunk whatever the chunk size: the smallest
        # power of two that holds it (>= 16) spares the kernels the padding (same result)
        t = x.shape[2]
        chunk = (
            c.chunk_size
            if t > c.chunk_size
            else min(c.chunk_size, max(16, 1 << (t - 1).bit_length()))
        )
        one_chunk = t <= min(c.chunk_size, ONE_CHUNK_MAX_LEN)
        conv = causal_conv_supported(x.device, c.d_conv)
        dtype = _products_dtype(x)
        ssd = one_chunk and ssd_supported(x.device, t, c.headdim, c.d_state, dtype)
        return (self.eps, *dims, chunk, c.norm_eps, self._use_triton(x), conv, ssd, one_chunk)

    @staticmethod
    def block(x_in: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]) -> Tensor:
        """The whole block for sequences of one chunk: the SSD is :func:`ssd_one_chunk`, two
        batched products, so nothing stops ``torch.compile`` from taking the block whole."""
        dt_bias, a_log, d_skip = prm[4:7]
        h, p, g, n, e = cst[1:6]
        xbc, dt, z = _mamba_in(x_in, prm, cst)  # (K, B, T, C), (K, B, T, H), (K, B, T, E)
        k, b, t, _ = xbc.shape
        step = F.softplus(dt.float() + dt_bias.float()[:, None, None, :])  # (K, B, T, H)
        a = -torch.exp(a_log.float())  # (K, H)
        if cst[12]:  # the (T, T) intermediates stay in registers (Triton)
            y = ssd_xbc(xbc, step, a, d_skip, heads=h, groups=g, d_state=n)  # (K, B, T, E)
            return _mamba_out(x_in, y, z, prm, cst)
        x, bmat, cmat = torch.split(xbc, [e, g * n, g * n], dim=-1)
        y = ssd_one_chunk(
            x.reshape(k, b, t, h, p),
            step,
            a[:, None, :],  # A (K, 1, H)
            bmat.reshape(k, b, t, g, n),
            cmat.reshape(k, b, t, g, n),
            D=d_skip[:, None, :],  # (K, 1, H)
        )  # (K, B, T, H, P)
        return _mamba_out(x_in, y.reshape(k, b, t, e), z, prm, cst)

    def forward(self, x: Tensor) -> Tensor:
        """Sequences of one chunk (and at most :data:`ONE_CHUNK_MAX_LEN`) run :meth:`block`
        (compiled whole when compiled). Longer ones run in three parts: projections and conv,
        the chunked SSD scan, gated norm and output; when compiled, the first and last parts run
        through ``torch.compile`` and the scan (mamba-ssm's Triton kernel or the pure-PyTorch
        SSD) is called eagerly."""
        prm, cst = (self.norm, *self.params()), self.consts(x)
        if cst[-1]:
            fn = _compiled_fn(type(self).block, self.compiled)
            return fn(x, prm, cst)
        pre = _compiled_fn(_mamba_pre, self.compiled)
        post = _compiled_fn(_mamba_post, self.compiled)
        u, dtf, bmat, cmat, z = pre(x, prm, cst)
        y = _mamba_scan(u, dtf, bmat, cmat, prm, cst)  # (B, T, K·H, P)
        return post(x, y, z, prm, cst)

    def export(self, slot: int, block: Any) -> None:
        super().export(slot, block)
        m = block.mixer
        targets = (
            m.in_proj.weight,
            m.conv1d.weight,
            m.conv1d.bias,
            m.dt_bias,
            m.A_log,
            m.D,
            m.norm.weight,
            m.out_proj.weight,
        )
        with torch.no_grad():
            for name, target in zip(self._NAMES, targets, strict=True):
                target.copy_(getattr(self, name)[slot])


def _mamba_in(
    x_in: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]
) -> tuple[Tensor, Tensor, Tensor]:
    """Norm, in_proj and the causal conv of K_p stacked Mamba2 mixers.

    Returns: xbc (K, B, T, C) after the conv and SiLU, dt (K, B, T, H) before softplus and
    bias, z (K, B, T, E).
    """
    norm, in_proj, conv_w, conv_b = prm[:4]
    eps, e, c, w, conv_kernel = cst[0], cst[5], cst[6], cst[7], cst[11]
    u = _rms(x_in, eps)  # (K, B, T, D)
    in_proj = _folded(in_proj, norm)  # (K, E + C + H, D)
    t = u.shape[2]
    # three products: z, xbc and dt each contiguous, so their rows start aligned (with dt's H
    # channels appended, compiled kernels could not vectorise their loads) and the backward pass
    # needs no concatenation of their gradients (a copy of the E + C channels of every token)
    z = _bmm_t(u, in_proj[:, :e])  # (K, B, T, E)
    xbc = _bmm_t(u, in_proj[:, e : e + c])  # (K, B, T, C)
    dt = _bmm_t(u, in_proj[:, e + c :])  # (K, B, T, H)
    if conv_kernel:  # one pass forward, two backward (Triton)
        return causal_conv_silu(xbc, conv_w[:, :, 0, :], conv_b), dt, z
    # depthwise causal conv written as W shifted products: elementwise work that compiles into
    # one kernel (cuDNN's depthwise conv1d on K·C channels was a tenth of the step)
    cw = conv_w.to(xbc.dtype)[:, :, 0, :]  # (K, C, W)
    padded = F.pad(xbc, (0, 0, w - 1, 0))  # (K, B, T + W - 1, C)
    conv = conv_b.to(xbc.dtype)[:, None, None, :] + sum(
        padded[:, :, j : j + t, :] * cw[:, None, None, :, j] for j in range(w)
    )  # (K, B, T, C)
    return F.silu(conv), dt, z


def _mamba_pre(
    x_in: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`_mamba_in` with the candidates folded into heads for the chunked scan (head
    k·H + h' reads group k·G + h' // (H / G)).

    Returns: x (B, T, K·H, P), dt (B, T, K·H), B and C (B, T, K·G, N), z (K, B, T, E).
    """
    h, p, g, n, e = cst[1:6]
    xbc, dt, z = _mamba_in(x_in, prm, cst)
    k, b, t, _ = xbc.shape
    xbc = xbc.permute(1, 2, 0, 3)  # (B, T, K, C)
    x, bmat, cmat = torch.split(xbc, [e, g * n, g * n], dim=-1)
    x = x.reshape(b, t, k * h, p)  # (B, T, K·H, P)
    bmat = bmat.reshape(b, t, k * g, n)  # (B, T, K·G, N)
    cmat = cmat.reshape(b, t, k * g, n)  # (B, T, K·G, N)
    dtf = dt.permute(1, 2, 0, 3).reshape(b, t, k * h)  # (B, T, K·H)
    return x, dtf, bmat, cmat, z


def _mamba_scan(
    x: Tensor,
    dtf: Tensor,
    bmat: Tensor,
    cmat: Tensor,
    prm: tuple[Tensor, ...],
    cst: tuple[Any, ...],
) -> Tensor:
    """The SSD scan over the folded heads. Returns y (B, T, K·H, P)."""
    dt_bias, a_log, d_skip = prm[4:7]
    chunk, use_triton = cst[8], cst[10]
    kh = dtf.shape[-1]
    a = -torch.exp(a_log.float()).reshape(kh)  # (K·H,)
    if use_triton:
        from primitives.kernels.mamba_ssm import load_mamba_chunk_scan_combined

        kernel = load_mamba_chunk_scan_combined()
        y = kernel(
            x,
            dtf,
            a,
            bmat,
            cmat,
            chunk,
            D=d_skip.reshape(kh),
            dt_bias=dt_bias.reshape(kh),
            dt_softplus=True,
        )  # (B, T, K·H, P)
    else:
        step = F.softplus(dtf.float() + dt_bias.float().reshape(kh))  # (B, T, K·H)
        y = ssd_chunked(x, step, a, bmat, cmat, chunk, D=d_skip.reshape(kh))  # (B, T, K·H, P)
    assert isinstance(y, Tensor)
    return y


def _mamba_post(
    x_in: Tensor, y: Tensor, z: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]
) -> Tensor:
    """:func:`_mamba_out` for y (B, T, K·H, P) from the chunked scan."""
    k, b, t, _ = x_in.shape
    return _mamba_out(x_in, y.reshape(b, t, k, -1).permute(2, 0, 1, 3), z, prm, cst)


def _mamba_out(
    x_in: Tensor, y: Tensor, z: Tensor, prm: tuple[Tensor, ...], cst: tuple[Any, ...]
) -> Tensor:
    """Gated RMSNorm (fp32 inside, RMS over groups of E / G features), out_proj, residual.

    Args: x_in (K, B, T, D); y and z (K, B, T, E). Returns (K, B, T, D).
    """
    gnorm, out_proj = prm[7], prm[8]
    g, e, norm_eps = cst[3], cst[5], cst[9]
    y = gated_rms_norm(y, z, None, group_size=e // g, eps=norm_eps)  # (K, B, T, E)
    return x_in + _bmm_t(y, _folded(out_proj, gnorm))  # (K, B, T, D)


_COMPILED_FNS: dict[Callable[..., Any], Callable[..., Any]] = {}


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _compiled_fn(fn: _Fn, on: bool = True) -> _Fn:
    """``torch.compile`` of a pure function, built once per function and shared by all layers;
    ``fn`` itself when not ``on``."""
    if not on:
        return fn
    if fn not in _COMPILED_FNS:
        _COMPILED_FNS[fn] = torch.compile(fn)
    return cast(_Fn, _COMPILED_FNS[fn])


_STACKED: dict[str, type[_StackedMixer]] = {
    "mA": _StackedAttention,
    "M": _StackedMLP,
    "Mb": _StackedMamba,
}


class _Permute(torch.autograd.Function):
    """x.index_select(0, index) for a permutation ``index``, whose gradient is the gather by
    the inverse permutation ``inverse`` (autograd's index_select backward would zero a tensor
    of x's size and scatter-add into it)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse), None, None


@dataclass(frozen=True)
class _Group:
    kind: str
    slots: tuple[int, ...]


class FusedArrangements(nn.Module):
    """K candidate models of one depth and shape, trained as one module on shared batches.

    Args:
        models: naive :class:`ArrangementModel` s (their weights are copied; they are not kept).
            All must share every :class:`ModelConfig` field except ``layers``, and the depth.

    forward(tokens (B, T)) -> logits (K, B, T, V).
    """

    def __init__(self, models: Sequence[ArrangementModel]) -> None:
        super().__init__()
        if not models:
            raise ValueError("FusedArrangements needs at least one model")
        cfgs = [m.cfg for m in models]
        base = cfgs[0]
        for cfg in cfgs[1:]:
            if cfg.to_dict() | {"layers": None} != base.to_dict() | {"layers": None}:
                raise ValueError("fused models must share every ModelConfig field but layers")
            if len(cfg.layers) != len(base.layers):
                raise ValueError("fused models must have the same depth")
        if base.tie_embeddings:
            raise ValueError("tied embeddings are not supported by FusedArrangements")
        self.cfgs = cfgs
        self.k = len(models)
        self.eps = base.norm_eps
        self.embed = _stack([m.embed.weight for m in models])  # (K, V, D)
        self.layer_groups: list[list[_Group]] = []
        self.mixers = nn.ModuleList()
        order = tuple(range(self.k))  # the candidates' order along the stream's K axis
        for i in range(len(base.layers)):
            groups = []
            # the stream in the previous layer's order, split stably by primitive: each group is
            # a contiguous slice and a layer of one primitive keeps the order (no data moves)
            for kind in dict.fromkeys(cfgs[j].layers[i] for j in order):
                slots = tuple(j for j in order if cfgs[j].layers[i] == kind)
                blocks = [models[j].layers[i] for j in slots]
                self.mixers.append(_STACKED[kind](blocks, self.eps))
                groups.append(_Group(kind, slots))
            grouped = sum((g.slots for g in groups), ())
            self._register_regroup(f"regroup_{i}", order, grouped)
            order = grouped
            self.layer_groups.append(groups)
        self._register_regroup("regroup_out", order, tuple(range(self.k)))
        self.has_decoder = base.head == "compression"
        if self.has_decoder:
            decs: list[Any] = [m.decoder for m in models]
            self.register_buffer("dec_pos", models[0].get_buffer("dec_pos").clone(), False)
            self.dec_n1 = _stack([d[0].weight for d in decs])  # (K, D)
            self.dec_w1 = _stack([d[1].weight for d in decs])  # (K, D, D)
            self.dec_b1 = _stack([d[1].bias for d in decs])  # (K, D)
            self.dec_n2 = _stack([d[3].weight for d in decs])
            self.dec_w2 = _stack([d[4].weight for d in decs])
            self.dec_b2 = _stack([d[4].bias for d in decs])
        self.norm_f = _stack([m.norm_f.weight for m in models])  # (K, D)
        self.head_w = _stack([m.head.weight for m in models])  # (K, V, D)
        self.head_b = _stack([m.head.bias for m in models]) if base.head_bias else None  # (K, V)
        self.compiled = False  # the head and the training loss compiled too

    def compile_blocks(self, on: bool = True) -> FusedArrangements:
        """Run every stacked block through ``torch.compile`` (one graph per primitive, shared
        by all layers). Off by default; returns self.

        Mixed arrangements stack a different number of candidates K_p at each layer. Dynamo
        keeps parameter shapes static by default, so every new K_p would compile again (and
        after eight, fall back to eager); letting parameter shapes be dynamic makes the second
        K_p compile one graph with a symbolic K_p that serves the rest. A block that fails to
        compile runs eagerly (dynamo logs why) instead of failing its candidates. Both are
        dynamo's process-wide settings: ``force_parameter_static_shapes = False`` and
        ``suppress_errors = True``.
        """
        if on:
            torch._dynamo.config.force_parameter_static_shapes = False
            torch._dynamo.config.suppress_errors = True
        for mixer in self.mixers:
            cast(_StackedMixer, mixer).compiled = on
        self.compiled = on
        return self

    def _register_regroup(
        self, name: str, before: tuple[int, ...], after: tuple[int, ...]
    ) -> None:
        """Buffers that take the stream from the candidate order ``before`` to ``after``:
        ``name`` the positions in ``before`` of ``after``'s candidates, ``name_inv`` its
        inverse (for the gradient); none when the orders are the same."""
        if before == after:
            return
        where = {j: pos for pos, j in enumerate(before)}
        index = torch.tensor([where[j] for j in after], dtype=torch.long)
        self.register_buffer(name, index, persistent=False)
        self.register_buffer(f"{name}_inv", torch.argsort(index), persistent=False)

    def _regroup(self, x: Tensor, name: str) -> Tensor:
        """x (K, ...) reordered along K by the buffers ``name`` (unchanged without them)."""
        if name not in self._buffers:
            return x
        index, inverse = self.get_buffer(name), self.get_buffer(f"{name}_inv")
        return cast(Tensor, _Permute.apply(x, index, inverse))  # type: ignore[no-untyped-call]

    def forward(self, tokens: Tensor) -> Tensor:
        """Args: tokens (B, T) int64 shared by all candidates, or (K, B, T) one batch each.

        Returns: (K, B, T, V).
        """
        x = _embed(self.embed, tokens)  # (K, B, T, D)
        mixers = iter(self.mixers)
        for i, groups in enumerate(self.layer_groups):
            x = self._regroup(x, f"regroup_{i}")  # (K, B, T, D), this layer's groups in turn
            if len(groups) == 1:
                x = next(mixers)(x)  # every candidate has this primitive
                continue
            outs, start = [], 0
            for grp in groups:
                part = x[start : start + len(grp.slots)]  # (K_p, B, T, D), a view
                outs.append(next(mixers)(part).to(x.dtype))
                start += len(grp.slots)
            x = torch.cat(outs)
        x = self._regroup(x, "regroup_out")  # back in the candidates' order
        if self.has_decoder:
            t = tokens.shape[-1]
            pos = self.get_buffer("dec_pos")[:t].to(x.dtype)  # (T, D)
            h = x[:, :, -1:, :] + pos  # (K, B, T, D)
            h = _bmm_t(_rms(h, self.eps), _folded(self.dec_w1, self.dec_n1))  # (K, B, T, D)
            h = F.gelu(h + self.dec_b1[:, None, None])
            h = _bmm_t(_rms(h, self.eps), _folded(self.dec_w2, self.dec_n2))  # (K, B, T, D)
            h = F.gelu(h + self.dec_b2[:, None, None])
            x = h  # (K, B, T, D)
        head = _compiled_fn(_logits, self.compiled)
        logits = head(x, self.norm_f, self.head_w, self.eps)  # (K, B, T, V)
        if self.head_b is not None:
            logits = logits + self.head_b[:, None, None, :].to(logits.dtype)
        return logits

    def export(self, slot: int, model: ArrangementModel) -> None:
        """Copy candidate ``slot``'s current weights into a naive model of its config."""
        mixers = iter(self.mixers)
        for i, groups in enumerate(self.layer_groups):
            for grp in groups:
                stacked = next(mixers)
                if slot in grp.slots:
                    cast(_StackedMixer, stacked).export(grp.slots.index(slot), model.layers[i])
        with torch.no_grad():
            model.embed.weight.copy_(self.embed[slot])
            model.norm_f.weight.copy_(self.norm_f[slot])
            model.head.weight.copy_(self.head_w[slot])
            if self.head_b is not None:
                model.head.bias.copy_(self.head_b[slot])
            if self.has_decoder:
                dec: Any = model.decoder
                assert dec is not None
                dec[0].weight.copy_(self.dec_n1[slot])
                dec[1].weight.copy_(self.dec_w1[slot])
                dec[1].bias.copy_(self.dec_b1[slot])
                dec[3].weight.copy_(self.dec_n2[slot])
                dec[4].weight.copy_(self.dec_w2[slot])
                dec[4].bias.copy_(self.dec_b2[slot])


def fused_models(cfgs: Sequence[ModelConfig], seeds: Sequence[int]) -> FusedArrangements:
    """Build each naive model under ``torch.manual_seed(seed)`` and fuse them (CPU, fp32)."""
    models = []
    for cfg, seed in zip(cfgs, seeds, strict=True):
        torch.manual_seed(seed)
        models.append(build_model(cfg))
    return FusedArrangements(models)


def _fused_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Sum over candidates of each candidate's mean token loss, and the per-candidate losses.

    Args: logits (K, B, T, V); targets (B, T) shared or (K, B, T) per candidate, with
        IGNORE_INDEX where not scored.
    Returns: (scalar sum, (K,) per-candidate means).
    """
    k = logits.shape[0]
    flat = logits.float().flatten(0, 2)  # (K·B·T, V)
    tgt = targets if targets.dim() == 3 else targets.expand(k, *targets.shape)  # (K, B, T)
    each = F.cross_entropy(flat, tgt.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    n_valid = (tgt != IGNORE_INDEX).flatten(1).sum(dim=1)  # (K,) on device: no sync
    per = each.view(k, -1).sum(dim=1) / n_valid  # (K,)
    return per.sum(), per


def fused_train_step(
    model: FusedArrangements,
    opt: torch.optim.Optimizer,
    tokens: Tensor,
    targets: Tensor,
    *,
    bf16: bool,
) -> Tensor:
    """One optimiser step of all K candidates on one batch (bf16 autocast on CUDA if asked).

    Args: tokens, targets (B, T) shared or (K, B, T) per candidate. Returns: each candidate's
    mean token loss, (K,) detached.
    """
    with bf16_autocast(tokens.device, bf16):
        logits = model(tokens)  # (K, B, T, V)
    loss, per = _compiled_fn(_fused_loss, model.compiled)(logits, targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    opt.step()
    return per.detach()


def capturable_adamw(
    params: Any, *, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.AdamW:
    """Fused AdamW that a CUDA graph can record: its step counts live on the device and its
    learning rate is a device tensor, changed in place by :func:`set_lr` (a float would be baked
    into the recorded kernels)."""
    return torch.optim.AdamW(
        params,
        lr=torch.tensor(lr, device=device),
        weight_decay=weight_decay,
        fused=True,
        capturable=True,
    )


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Every group's learning rate, in place where it is a tensor."""
    for group in opt.param_groups:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


class GraphedTrainStep:
    """:func:`fused_train_step` replayed from CUDA graphs: one launch a step, not hundreds.

    A fused step of mixed arrangements is bound by the host when launched op by op: K = 32
    random three-primitive arrangements spent 77 ms of kernels in a 104 ms step on an H200 (48
    stacked blocks a step, each a compiled graph, and about 325 batched products); replayed,
    the step took 76.9 ms, its kernels' time (bench/results runs log, stop 21). For each batch
    shape the first ``warmup`` calls run eagerly on a side stream (dynamo
    compiles, Triton tunes its kernels and AdamW makes its state there); the next call records
    the forward, backward and optimiser step in a graph, and that call and the later ones copy
    their batch into the graph's inputs and replay it. The graphs of different shapes (an
    epoch's last, smaller batch) share one memory pool: they never run at once, and each
    writes what it reads. The optimiser must be :func:`capturable_adamw`'s.

    Returns from each call the candidates' losses (K,), which the next call overwrites: copy
    them to keep them.
    """

    def __init__(
        self,
        model: FusedArrangements,
        opt: torch.optim.Optimizer,
        *,
        bf16: bool,
        warmup: int = 2,
    ) -> None:
        self.model, self.opt, self.bf16, self.warmup = model, opt, bf16, warmup
        self.stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        self.pool = torch.cuda.graph_pool_handle()
        self.eager_calls: dict[tuple[int, ...], int] = {}
        self.graphs: dict[
            tuple[int, ...], tuple[torch.cuda.CUDAGraph, Tensor, Tensor, Tensor]
        ] = {}

    def __call__(self, tokens: Tensor, targets: Tensor) -> Tensor:
        key = (*tokens.shape, -1, *targets.shape)
        graphed = self.graphs.get(key)
        if graphed is None:
            eager = self.eager_calls.get(key, 0)
            if eager < self.warmup:
                self.eager_calls[key] = eager + 1
                return self._eager(tokens, targets)
            graphed = self.graphs[key] = self._record(tokens, targets)
        graph, static_tokens, static_targets, per = graphed
        static_tokens.copy_(tokens)
        static_targets.copy_(targets)
        graph.replay()
        return per

    def _eager(self, tokens: Tensor, targets: Tensor) -> Tensor:
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            per = fused_train_step(self.model, self.opt, tokens, targets, bf16=self.bf16)
        torch.cuda.current_stream().wait_stream(self.stream)
        return per

    def _record(
        self, tokens: Tensor, targets: Tensor
    ) -> tuple[torch.cuda.CUDAGraph, Tensor, Tensor, Tensor]:
        """The step recorded (not run) on static copies of the batch."""
        static_tokens, static_targets = tokens.clone(), targets.clone()
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)  # the gradients are the graph's own
        with torch.cuda.graph(graph, pool=self.pool):
            per = fused_train_step(
                self.model, self.opt, static_tokens, static_targets, bf16=self.bf16
            )
        return graph, static_tokens, static_targets, per


def fused_trainer(
    model: FusedArrangements, *, lr: float, weight_decay: float, bf16: bool, cuda_graph: bool
) -> tuple[torch.optim.Optimizer, Callable[[Tensor, Tensor], Tensor]]:
    """The AdamW of a fused model (fused kernels on CUDA) and its training step, (tokens,
    targets) -> the candidates' losses (K,): :func:`fused_train_step`, or with ``cuda_graph`` on
    a CUDA model a :class:`GraphedTrainStep` over :func:`capturable_adamw`. Set the learning
    rate with :func:`set_lr`."""
    device = next(model.parameters()).device
    if cuda_graph and device.type == "cuda":
        opt = capturable_adamw(model.parameters(), lr=lr, weight_decay=weight_decay, device=device)
        return opt, GraphedTrainStep(model, opt, bf16=bf16)
    plain = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, fused=device.type == "cuda"
    )

    def step(tokens: Tensor, targets: Tensor) -> Tensor:
        return fused_train_step(model, plain, tokens, targets, bf16=bf16)

    return plain, step


@torch.no_grad()
def _score_fused(
    model: FusedArrangements,
    inputs: Tensor,
    targets: Tensor,
    *,
    vocab_size: int,
    batch_size: int,
    bf16: bool,
) -> list[Accuracy]:
    """Per-candidate macro and token accuracy, with one host sync.

    Args: inputs, targets (n, T) shared or (K, n, T) per candidate.
    """
    was_training = model.training
    model.eval()
    k = model.k
    total = torch.zeros(k, vocab_size + 1, dtype=torch.int64, device=targets.device)
    correct = torch.zeros_like(total)
    with bf16_autocast(inputs.device, bf16):
        for start in range(0, inputs.shape[-2], batch_size):
            logits = model(inputs[..., start : start + batch_size, :])  # (K, b, T, V)
            tgt = targets[..., start : start + batch_size, :]  # (b, T) or (K, b, T)
            scored = (tgt != IGNORE_INDEX).expand(k, *tgt.shape[-2:])  # (K, b, T)
            hit = scored & (logits.argmax(dim=-1) == tgt)  # (K, b, T)
            classes = torch.where(scored, tgt, vocab_size).flatten(1)  # (K, b·T)
            hits = torch.where(hit, tgt, vocab_size).flatten(1)  # (K, b·T)
            ones = torch.ones_like(classes)
            total.scatter_add_(1, classes, ones)
            correct.scatter_add_(1, hits, ones)
    model.train(was_training)
    counts = torch.stack([total[:, :vocab_size], correct[:, :vocab_size]]).cpu().double()
    out = []
    for j in range(k):
        tot, cor = counts[0, j], counts[1, j]  # (V,) each
        present = tot > 0
        if not bool(present.any()):
            out.append(Accuracy(macro=0.0, token=0.0))
            continue
        macro = float((cor[present] / tot[present]).mean())
        out.append(Accuracy(macro=macro, token=float(cor.sum() / tot.sum())))
    return out


def fit_and_score_fused(
    model: FusedArrangements,
    fit: MadSplit | Sequence[MadSplit],
    score_set: MadSplit | Sequence[MadSplit],
    cfg: LoopConfig,
    *,
    vocab_size: int,
    seed: int | Sequence[int],
    deadline: float | None = None,
    cuda_graph: bool = False,
) -> list[FitOutcome]:
    """:func:`primitives.training.fit_and_score` for K fused candidates; one outcome each.

    ``fit``, ``score_set`` and ``seed`` (the shuffle's) are one for all candidates or one per
    candidate. Candidates of the same seed share a lane: its data and its batch order; with one
    lane every step trains on one shared batch, with several each candidate gets its lane's
    batch (the splits of all lanes must have the same shapes). ``cuda_graph`` replays the
    training steps from CUDA graphs (:class:`GraphedTrainStep`) on a CUDA model; elsewhere it
    changes nothing.
    """
    device = next(model.parameters()).device
    k = model.k
    seeds = [seed] * k if isinstance(seed, int) else list(seed)
    fits = [fit] * k if isinstance(fit, MadSplit) else list(fit)
    scores = [score_set] * k if isinstance(score_set, MadSplit) else list(score_set)
    if not len(seeds) == len(fits) == len(scores) == k:
        raise ValueError(f"{k} candidates need {k} seeds, fit and score splits")
    lanes = list(dict.fromkeys(seeds))  # distinct seeds, first-seen order
    first = [seeds.index(s) for s in lanes]  # a candidate of each lane
    lane_of = torch.tensor([lanes.index(s) for s in seeds], device=device)  # (K,)
    if any(f.inputs.shape != fits[0].inputs.shape for f in fits) or any(
        sc.inputs.shape != scores[0].inputs.shape for sc in scores
    ):
        raise ValueError("fused candidates need fit and score splits of one shape each")

    def stacked(splits: list[MadSplit], attr: str) -> Tensor:
        rows = [getattr(splits[j], attr) for j in first]  # one (n, T) per lane
        return torch.stack(rows).to(device)  # (S, n, T)

    x, y = stacked(fits, "inputs"), stacked(fits, "targets")  # (S, n, T) each
    xs, ys = stacked(scores, "inputs"), stacked(scores, "targets")
    if len(lanes) == 1:  # one shared batch per step
        x, y, xs, ys = x[0], y[0], xs[0], ys[0]  # (n, T) each
    else:  # each candidate scores on its lane's rows
        xs, ys = xs[lane_of], ys[lane_of]  # (K, n_score, T)
    n = x.shape[-2]
    batch = min(cfg.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    orders = []
    for lane_seed in lanes:
        shuffle = torch.Generator().manual_seed(lane_seed)
        orders.append(
            torch.stack([torch.randperm(n, generator=shuffle) for _ in range(cfg.epochs)])
        )
    order = torch.stack(orders).to(device)  # (S, E, n)
    lane_rows = torch.arange(len(lanes), device=device)[:, None]  # (S, 1)

    def batch_of(epoch: int, b: int) -> tuple[Tensor, Tensor]:
        idx = order[:, epoch, b * batch : (b + 1) * batch]  # (S, batch)
        if len(lanes) == 1:
            return x[idx[0]], y[idx[0]]  # (batch, T) each
        return x[lane_rows, idx][lane_of], y[lane_rows, idx][lane_of]  # (K, batch, T) each

    opt, train_step = fused_trainer(
        model, lr=cfg.lr, weight_decay=cfg.weight_decay, bf16=cfg.bf16, cuda_graph=cuda_graph
    )
    losses = torch.zeros(cfg.epochs * steps_per_epoch, k, device=device)  # (steps, K)
    done: list[FitOutcome | None] = [None] * k
    accs: list[Accuracy | None] = [None] * k
    bound = torch.full((k,), math.inf)
    step, checked = 0, 0

    def finish(j: int, status: str, acc: Accuracy | None, epochs: int, early: bool) -> None:
        curve = losses[:step, j]  # (step,)
        done[j] = _outcome(curve, status, acc, step, epochs, steps_per_epoch, early)

    def check(epochs: int) -> None:
        nonlocal checked, bound
        if step == checked:
            return
        worst = losses[checked:step].max(dim=0).values.cpu()  # (K,): one host sync
        if math.isinf(float(bound.max())):
            first = losses[0].cpu()  # (K,)
            bound = torch.where(
                torch.isfinite(first),
                torch.clamp(cfg.diverge_factor * first, max=1e4),
                torch.full_like(first, -math.inf),
            )
        checked = step
        for j in range(k):
            if done[j] is None and (not math.isfinite(float(worst[j])) or worst[j] > bound[j]):
                finish(j, "diverged", None, epochs, False)

    model.train()
    epochs_run = 0
    for epoch in range(cfg.epochs):
        set_lr(opt, _cosine_lr(cfg, epoch))
        for b in range(steps_per_epoch):
            tokens, targets = batch_of(epoch, b)
            losses[step] = train_step(tokens, targets)
            step += 1
            if step % cfg.check_every == 0:
                check(epochs_run)
        check(epochs_run)
        epochs_run = epoch + 1
        if all(d is not None for d in done):
            break
        if epochs_run % cfg.eval_every == 0 or epochs_run == cfg.epochs:
            scored = _score_fused(
                model, xs, ys, vocab_size=vocab_size, batch_size=cfg.eval_batch_size, bf16=cfg.bf16
            )
            for j in range(k):
                if done[j] is None:
                    accs[j] = scored[j]
                    if scored[j].macro >= cfg.early_stop_acc:
                        finish(j, "ok", scored[j], epochs_run, True)
        if all(d is not None for d in done):
            break
        if deadline is not None and time.perf_counter() > deadline and epochs_run < cfg.epochs:
            for j in range(k):
                if done[j] is None:
                    finish(j, "timeout", None, epochs_run, False)
            break
    for j in range(k):
        if done[j] is None:
            finish(j, "ok", accs[j], epochs_run, False)
    return [d for d in done if d is not None]


def evaluate_fused(
    jobs: Sequence[EvalJob],
    *,
    max_k: int = DEFAULT_MAX_K,
    time_limit_s: float | None = None,
    compile_blocks: bool = False,
    cuda_graph: bool = False,
) -> list[EvalResult]:
    """Like :func:`primitives.evaluator.evaluate` for MAD jobs, fusing compatible jobs.

    Jobs with the same fidelity, split, device and depth train together, up to ``max_k``
    per fused step, task by task in :data:`TASK_NAMES` order (jobs of different seeds each keep
    their seed's data, batch order and initial weights); a job drops out of later tasks once
    one of its tasks fails (as ``evaluate`` stops a job at its first failing task); a group
    that runs out of GPU memory is tried again in halves. Per-task
    ``wall_s`` is the fused task's wall time divided by the candidates in it (amortised);
    ``fused_k`` records that count. ``time_limit_s`` bounds each fused group.
    ``compile_blocks`` runs the stacked blocks through ``torch.compile`` (see
    :meth:`FusedArrangements.compile_blocks`); ``cuda_graph`` replays the training steps on a
    CUDA device from CUDA graphs (:class:`GraphedTrainStep`).

    Raises:
        ValueError: a malformed job, or an LM task (use ``evaluate`` for those).
    """
    resolved = []
    for job in jobs:
        if job.task not in ("mad", *TASK_NAMES):
            raise ValueError(f"evaluate_fused takes MAD tasks only, got {job.task!r}")
        resolved.append(_resolve(job))
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, (job, (fid, _, device)) in enumerate(zip(jobs, resolved, strict=True)):
        key = (fid, job.split, str(device), len(job.layers))
        groups.setdefault(key, []).append(i)
    results: list[EvalResult | None] = [None] * len(jobs)
    speed = _Speed(compile_blocks, cuda_graph)
    for members in groups.values():
        for start in range(0, len(members), max_k):
            chunk = members[start : start + max_k]
            for i, res in _run_fitting(jobs, resolved, chunk, time_limit_s, speed):
                results[i] = res
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class _Speed:
    """How a fused group trains: compiled blocks, steps replayed from CUDA graphs."""

    compile_blocks: bool
    cuda_graph: bool


def _run_fitting(
    jobs: Sequence[EvalJob],
    resolved: Sequence[tuple[Fidelity, list[MadTask], torch.device]],
    members: list[int],
    time_limit_s: float | None,
    speed: _Speed,
) -> list[tuple[int, EvalResult]]:
    """:func:`_run_group`, then the jobs it lost to running out of memory again in smaller
    groups (halves, when all were lost), down to one job: a batch too big for the card is the
    batching's fault, not the candidates'. Returns (job index, result) pairs."""
    results = _run_group(jobs, resolved, members, time_limit_s, speed)
    group = list(zip(members, results, strict=True))
    lost = [i for i, res in group if res.status == "oom"]
    if len(members) == 1 or not lost:
        return group
    kept = [(i, res) for i, res in group if res.status != "oom"]
    parts = [lost[: len(lost) // 2], lost[len(lost) // 2 :]] if lost == members else [lost]
    for part in parts:
        kept += _run_fitting(jobs, resolved, part, time_limit_s, speed)
    return kept


def _run_group(
    jobs: Sequence[EvalJob],
    resolved: Sequence[tuple[Fidelity, list[MadTask], torch.device]],
    members: list[int],
    time_limit_s: float | None,
    speed: _Speed,
) -> list[EvalResult]:
    start = time.perf_counter()
    deadline = None if time_limit_s is None else start + time_limit_s
    fid, _, device = resolved[members[0]]
    job0 = jobs[members[0]]
    cuda = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    per_task: dict[int, dict[str, dict[str, float]]] = {i: {} for i in members}
    status: dict[int, str] = dict.fromkeys(members, "ok")
    error: dict[int, str | None] = dict.fromkeys(members)
    try:
        for task_name in TASK_NAMES:
            active = [
                i
                for i in members
                if status[i] == "ok" and any(t.name == task_name for t in resolved[i][1])
            ]
            if not active:
                continue
            task = next(t for t in resolved[active[0]][1] if t.name == task_name)
            t0 = time.perf_counter()
            task_index = TASK_NAMES.index(task_name)
            splits = {  # each seed's data, as evaluate draws it
                s: split_for(_dataset(task, MAD_DATA_SEED + s), job0.split)
                for s in dict.fromkeys(jobs[i].seed for i in active)
            }
            seeds = [jobs[i].seed * 1000 + task_index for i in active]
            cfgs = [_model_config(jobs[i].layers, fid, task) for i in active]
            model = fused_models(cfgs, seeds).to(device)
            model.compile_blocks(speed.compile_blocks)
            outs = fit_and_score_fused(
                model,
                [splits[jobs[i].seed][0] for i in active],
                [splits[jobs[i].seed][1] for i in active],
                fid.loop(),
                vocab_size=task.vocab_size,
                seed=seeds,
                deadline=deadline,
                cuda_graph=speed.cuda_graph,
            )
            wall = (time.perf_counter() - t0) / len(active)
            for i, cfg, out in zip(active, cfgs, outs, strict=True):
                if out.status == "diverged":
                    status[i] = "diverged"
                    error[i] = f"{task_name}: loss diverged after {out.n_steps} steps"
                    continue
                if out.status == "timeout":
                    status[i] = "timeout"
                    error[i] = f"{task_name}: time limit reached after {out.n_epochs} epochs"
                    continue
                assert out.accuracy is not None
                per_task[i][task_name] = {
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
                    "wall_s": wall,
                    "fused_k": float(len(active)),
                }
            del model
    except torch.cuda.OutOfMemoryError as exc:
        for i in members:
            if status[i] == "ok":
                status[i], error[i] = "oom", _one_line(exc)
    except Exception as exc:  # a failed group is an outcome for each of its jobs
        for i in members:
            if status[i] == "ok":
                status[i], error[i] = "error", f"{type(exc).__name__}: {_one_line(exc)}"
    finally:
        peak = _peak_mem_mb(device)
        if cuda:
            torch.cuda.empty_cache()
    wall_s = time.perf_counter() - start
    results = []
    for i in members:
        job = jobs[i]
        tasks = resolved[i][1]
        cfg0 = _model_config(job.layers, fid, tasks[0])
        score = None
        if status[i] == "ok":
            score = sum(m["macro_acc"] for m in per_task[i].values()) / len(per_task[i])
        results.append(
            EvalResult(
                job=job,
                status=status[i],
                score=score,
                per_task=per_task[i],
                wall_s=wall_s / len(members),
                device=device_name,
                peak_mem_mb=peak,
                error=error[i],
                n_params=sum(layer_parameters(cfg0, kind) for kind in job.layers),
            )
        )
    return results
