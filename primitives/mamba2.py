"""Mb: the Mamba2 mixer (state-space duality, SSD) with the mamba-ssm parameterisation.

Parameter names and shapes follow ``mamba_ssm.modules.mamba2.Mamba2`` (in_proj, conv1d, dt_bias,
A_log, D, norm.weight, out_proj), so one state dict drives every compute path:

- ``impl="torch"``: :func:`ssd_chunked`, a pure-PyTorch chunked SSD that runs on CPU and GPU;
- ``impl="triton"``: mamba-ssm's ``mamba_chunk_scan_combined`` (CUDA only, optional package,
  imported through :mod:`primitives.kernels.mamba_ssm`);
- ``impl="auto"``: triton when the input is a CUDA tensor and the package imports, else torch.

:func:`ssd_ref` is the step-by-step recurrence both must agree with. The causal depthwise
convolution is ``F.conv1d`` with left context from symmetric padding and the tail cut off,
the equivalent of mamba-ssm's ``use_mem_eff_path=False`` without the causal-conv1d package.

The SSM, per head h with A_h < 0 and state h_t of shape (P, N):

    h_t = exp(dt_t · A_h) · h_{t-1} + dt_t · x_t ⊗ B_t,      y_t = h_t C_t + D_h · x_t

Head h reads B and C of group ``h // (H / G)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from primitives.kernels.mamba_ssm import load_mamba_chunk_scan_combined, mamba_ssm_available

__all__ = [
    "GatedRMSNorm",
    "Mamba2",
    "Mamba2Config",
    "MambaImpl",
    "gated_rms_norm",
    "ssd_chunked",
    "ssd_one_chunk",
    "ssd_ref",
]

MambaImpl = Literal["auto", "torch", "triton"]
_IMPLS = ("auto", "torch", "triton")


@dataclass(frozen=True, kw_only=True)
class Mamba2Config:
    """Shape and initialisation of one Mamba2 layer (defaults: mamba-ssm 2.x).

    Derived sizes: d_inner = expand·D = H·P, H = d_inner / headdim,
    conv_dim = d_inner + 2·G·N, in_proj width = 2·d_inner + 2·G·N + H.
    """

    d_model: int
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    headdim: int = 64
    ngroups: int = 1
    chunk_size: int = 256
    A_init_range: tuple[float, float] = (1.0, 16.0)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    norm_eps: float = 1e-5
    impl: MambaImpl = "auto"

    def __post_init__(self) -> None:
        for name in ("d_model", "d_state", "d_conv", "expand", "headdim", "ngroups", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_inner % self.headdim != 0:
            raise ValueError(
                f"expand·d_model = {self.d_inner} must be divisible by headdim ({self.headdim})"
            )
        if self.nheads % self.ngroups != 0:
            raise ValueError(
                f"heads ({self.nheads}) must be divisible by ngroups ({self.ngroups})"
            )
        lo, hi = self.A_init_range
        if not 0 < lo <= hi:
            raise ValueError(f"A_init_range must satisfy 0 < lo <= hi, got {self.A_init_range}")
        object.__setattr__(self, "A_init_range", (float(lo), float(hi)))
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if not self.dt_init_floor > 0:
            raise ValueError(f"dt_init_floor must be positive, got {self.dt_init_floor}")
        if self.impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {self.impl!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.ngroups * self.d_state

    @property
    def d_in_proj(self) -> int:
        return 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads


def _check_ssd_args(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be (B, T, H, P), got shape {tuple(x.shape)}")
    b, t, h, _ = x.shape
    if dt.shape != (b, t, h):
        raise ValueError(f"dt must be (B, T, H) = {(b, t, h)}, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must be (H,) = ({h},), got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (b, t) or B.shape != C.shape:
        raise ValueError(f"B and C must be (B, T, G, N), got {tuple(B.shape)}, {tuple(C.shape)}")
    if h % B.shape[2] != 0:
        raise ValueError(f"groups G={B.shape[2]} must divide heads H={h}")


def _work_dtype(x: Tensor) -> torch.dtype:
    """SSD arithmetic runs in fp32 (fp64 if given fp64), whatever the activation dtype."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _add_skip(y: Tensor, x: Tensor, D: Tensor | None) -> Tensor:
    """y + D·x for y, x (B, T, H, P) and D (H,) or (H, P)."""
    if D is None:
        return y
    d = D.to(y.dtype)
    return y + x * (d[:, None] if d.dim() == 1 else d)  # (B, T, H, P)


def _segsum(a: Tensor) -> Tensor:
    """Segment sums of a (..., K): out[..., i, j] = a[j+1] + ... + a[i] for i >= j, else -inf.

    Summing masked copies (rather than differencing a cumsum) keeps exp(out) exact to rounding.
    """
    k = a.shape[-1]
    rows = a[..., :, None].expand(*a.shape, k)  # (..., K, K): rows[i, j] = a[i]
    strict_lower = torch.ones(k, k, dtype=torch.bool, device=a.device).tril(diagonal=-1)
    sums = rows.masked_fill(~strict_lower, 0.0).cumsum(dim=-2)  # (..., K, K)
    lower = torch.ones(k, k, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill(~lower, float("-inf"))


def ssd_ref(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_states: Tensor | None = None,
    *,
    return_final_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The SSD recurrence, one time step at a time (slow, obvious).

    Args:
        x: (B, T, H, P) inputs.
        dt: (B, T, H) positive step sizes (already softplus-ed and biased).
        A: (H,) negative decay rates.
        B, C: (B, T, G, N) input and output projections, G dividing H.
        D: (H,) or (H, P) skip weights, or None.
        initial_states: (B, H, P, N) state before step 0, or None for zeros.
        return_final_states: also return the state after the last step.

    Returns:
        y (B, T, H, P) in x's dtype; with ``return_final_states``, (y, state (B, H, P, N)).
    """
    _check_ssd_args(x, dt, A, B, C)
    work = _work_dtype(x)
    b, t, h, p = x.shape
    rep = h // B.shape[2]
    xw, dtw, aw = x.to(work), dt.to(work), A.to(work)
    bh = B.to(work).repeat_interleave(rep, dim=2)  # (B, T, H, N)
    ch = C.to(work).repeat_interleave(rep, dim=2)  # (B, T, H, N)
    if initial_states is None:
        state = xw.new_zeros(b, h, p, B.shape[3])  # (B, H, P, N)
    else:
        state = initial_states.to(work)
    ys = []
    for s in range(t):
        decay = torch.exp(dtw[:, s] * aw)  # (B, H)
        xdt = xw[:, s] * dtw[:, s, :, None]  # (B, H, P)
        inp = torch.einsum("bhp,bhn->bhpn", xdt, bh[:, s])  # (B, H, P, N)
        state = decay[:, :, None, None] * state + inp  # (B, H, P, N)
        ys.append(torch.einsum("bhpn,bhn->bhp", state, ch[:, s]))  # (B, H, P)
    y = _add_skip(torch.stack(ys, dim=1), xw, D).to(x.dtype)  # (B, T, H, P)
    return (y, state.to(x.dtype)) if return_final_states else y


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    initial_states: Tensor | None = None,
    *,
    return_final_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked SSD in plain PyTorch; same arguments and result as :func:`ssd_ref`.

    The sequence is cut into C chunks of K = min(chunk_size, T) steps (zero-padded at the end:
    a padded step has dt = 0, so it neither decays nor feeds the state). Then:
    (1) outputs within each chunk from exp(segment sums of dt·A) — a masked (K, K) kernel;
    (2) the state each chunk leaves behind; (3) a recurrence carrying states across chunks;
    (4) the contribution of each chunk's incoming state to its outputs; plus D·x.
    Arithmetic is in fp32 (fp64 for fp64 inputs); y is returned in x's dtype.
    """
    _check_ssd_args(x, dt, A, B, C)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    work = _work_dtype(x)
    b, t, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    k = min(chunk_size, t)
    n_chunks = -(-t // k)
    pad = n_chunks * k - t
    xw, dtw, aw = x.to(work), dt.to(work), A.to(work)
    bw, cw = B.to(work), C.to(work)
    if pad:
        xw = F.pad(xw, (0, 0, 0, 0, 0, pad))  # (B, C·K, H, P)
        dtw = F.pad(dtw, (0, 0, 0, pad))  # (B, C·K, H)
        bw = F.pad(bw, (0, 0, 0, 0, 0, pad))  # (B, C·K, G, N)
        cw = F.pad(cw, (0, 0, 0, 0, 0, pad))  # (B, C·K, G, N)
    bh = bw.repeat_interleave(h // g, dim=2).view(b, n_chunks, k, h, n)  # (B, C, K, H, N)
    chh = cw.repeat_interleave(h // g, dim=2).view(b, n_chunks, k, h, n)  # (B, C, K, H, N)
    xdt = (xw * dtw[..., None]).view(b, n_chunks, k, h, p)  # (B, C, K, H, P)
    log_decay = (dtw * aw).view(b, n_chunks, k, h).permute(0, 3, 1, 2)  # (B, H, C, K)
    cum = log_decay.cumsum(dim=-1)  # (B, H, C, K)

    # (1) within chunks: y_i = sum_{j<=i} (C_i·B_j) exp(a_{j+1}+...+a_i) dt_j x_j
    kernel = torch.exp(_segsum(log_decay))  # (B, H, C, K, K)
    scores = torch.einsum("bcihn,bcjhn->bhcij", chh, bh) * kernel  # (B, H, C, K, K)
    y_diag = torch.einsum("bhcij,bcjhp->bcihp", scores, xdt)  # (B, C, K, H, P)

    # (2) state left by each chunk alone, decayed to the chunk's end
    to_end = torch.exp(cum[..., -1:] - cum)  # (B, H, C, K)
    chunk_states = torch.einsum("bcjhn,bhcj,bcjhp->bchpn", bh, to_end, xdt)  # (B, C, H, P, N)

    # (3) carry states across chunks: entry z is the state entering chunk z (z = C: final)
    if initial_states is None:
        init = xw.new_zeros(b, 1, h, p, n)  # (B, 1, H, P, N)
    else:
        init = initial_states.to(work)[:, None]  # (B, 1, H, P, N)
    chunk_states = torch.cat([init, chunk_states], dim=1)  # (B, C+1, H, P, N)
    carry = torch.exp(_segsum(F.pad(cum[..., -1], (1, 0))))  # (B, H, C+1, C+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", carry, chunk_states)  # (B, C+1, H, P, N)

    # (4) incoming state of each chunk, decayed to each position, read out by C
    from_start = torch.exp(cum)  # (B, H, C, K)
    incoming = states[:, :-1]  # (B, C, H, P, N)
    y_off = torch.einsum("bcihn,bchpn,bhci->bcihp", chh, incoming, from_start)  # (B, C, K, H, P)

    y = (y_diag + y_off).reshape(b, n_chunks * k, h, p)[:, :t]  # (B, T, H, P)
    y = _add_skip(y, xw[:, :t], D).to(x.dtype)
    return (y, states[:, -1].to(x.dtype)) if return_final_states else y


def ssd_one_chunk(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None
) -> Tensor:
    """SSD of sequences short enough to be one chunk, with any leading batch dimensions.

    With one chunk and no initial state, steps (2)-(4) of :func:`ssd_chunked` vanish and
    y = (C·Bᵀ ∘ L) (dt·x) + D·x, where L[t, s] = exp(dt_{s+1}·A + ... + dt_t·A) for s <= t and
    0 above the diagonal: two batched matrix products around one elementwise kernel (which
    ``torch.compile`` fuses), no recurrence. The decay is computed in fp32; the products run in
    x's dtype (bf16 under autocast), as mamba-ssm's kernels do (fp64 throughout for fp64).

    Args:
        x: (..., T, H, P) inputs.
        dt: (..., T, H) positive step sizes (already softplus-ed and biased).
        A: (..., H) negative decay rates (leading dimensions broadcast against x's).
        B, C: (..., T, G, N) input and output projections, G dividing H.
        D: (..., H) skip weights, or None.

    Returns:
        y (..., T, H, P) in x's dtype.
    """
    t, h = x.shape[-3], x.shape[-2]
    g = B.shape[-2]
    if dt.shape != x.shape[:-1] or B.shape != C.shape or B.shape[:-2] != x.shape[:-2]:
        raise ValueError(
            f"ssd_one_chunk wants x (..., T, H, P), dt (..., T, H), B and C (..., T, G, N); "
            f"got {tuple(x.shape)}, {tuple(dt.shape)}, {tuple(B.shape)}, {tuple(C.shape)}"
        )
    if h % g != 0:
        raise ValueError(f"groups G={g} must divide heads H={h}")
    pad = -t % 16  # zero steps at the end: a (T, T) product with rows of 16·k elements is
    if pad:  # aligned for the tensor cores, and causality keeps padding out of real outputs
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    t_pad = t + pad
    work = _work_dtype(x)
    # head-major from here: every product operand is made contiguous by the kernel making it
    xh, dth = x.transpose(-3, -2), dt.transpose(-1, -2)  # (..., H, T, P), (..., H, T)
    cum = (dth.to(work) * A.to(work)[..., :, None]).cumsum(dim=-1)  # (..., H, T)
    seg = cum[..., :, None] - cum[..., None, :]  # (..., H, T, T): the sums from s+1 to t
    causal = torch.ones(t_pad, t_pad, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp(seg.masked_fill(~causal, float("-inf")))  # (..., H, T, T)
    cb = torch.matmul(C.transpose(-3, -2), B.transpose(-3, -2).transpose(-2, -1))  # (..., G, T, T)
    grouped = decay.reshape(*decay.shape[:-3], g, h // g, t_pad, t_pad)  # (..., G, H/G, T, T)
    scores = cb.unsqueeze(-3) * grouped  # (..., G, H/G, T, T)
    xdt = xh * dth[..., None].to(x.dtype)  # (..., H, T, P)
    y = torch.matmul(scores.flatten(-4, -3).to(x.dtype), xdt)  # (..., H, T, P)
    if D is not None:
        y = y + xh * D.to(y.dtype)[..., :, None, None]
    return y[..., :t, :].transpose(-3, -2).to(x.dtype)  # (..., T, H, P)


class GatedRMSNorm(nn.Module):
    """norm(y · silu(z)) · weight, RMS taken per group of d_inner / G features (fp32 inside).

    Matches mamba-ssm's ``RMSNormGated(norm_before_gate=False)``.
    """

    def __init__(self, dim: int, *, group_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % group_size != 0:
            raise ValueError(f"dim ({dim}) must be divisible by group_size ({group_size})")
        self.group_size = group_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        """Args: y, z (B, T, H·P). Returns: (B, T, H·P) in y's dtype."""
        return gated_rms_norm(y, z, self.weight, group_size=self.group_size, eps=self.eps)


def gated_rms_norm(
    y: Tensor, z: Tensor, weight: Tensor | None, *, group_size: int, eps: float
) -> Tensor:
    """norm(y · silu(z)) · weight in fp32, RMS over groups of ``group_size`` features.

    Args: y, z (..., E); weight broadcastable to (..., E), or None for none (a caller that
    folds it into the product that follows). Returns: (..., E) in y's dtype.
    """
    gated = y.float() * F.silu(z.float())  # (..., E)
    grouped = gated.reshape(*gated.shape[:-1], -1, group_size)  # (..., G, E/G)
    scale = torch.rsqrt(grouped.pow(2).mean(dim=-1, keepdim=True) + eps)
    normed = (grouped * scale).flatten(-2)  # (..., E)
    return (normed if weight is None else normed * weight.float()).to(y.dtype)


class Mamba2(nn.Module):
    """The Mamba2 mixer: in_proj -> causal conv + SiLU -> SSD -> gated RMSNorm -> out_proj."""

    def __init__(self, cfg: Mamba2Config) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.nheads
        self.in_proj = nn.Linear(cfg.d_model, cfg.d_in_proj, bias=False)
        self.conv1d = nn.Conv1d(
            cfg.conv_dim,
            cfg.conv_dim,
            kernel_size=cfg.d_conv,
            groups=cfg.conv_dim,
            padding=cfg.d_conv - 1,
            bias=True,
        )
        # dt_bias: softplus(dt_bias) is log-uniform in [dt_min, dt_max], floored.
        log_lo, log_hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        dt = torch.exp(torch.rand(h) * (log_hi - log_lo) + log_lo).clamp(min=cfg.dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(h).uniform_(*cfg.A_init_range)))
        self.D = nn.Parameter(torch.ones(h))
        for param in (self.dt_bias, self.A_log, self.D):
            param._no_weight_decay = True  # type: ignore[attr-defined]  # mamba-ssm's marker
        self.norm = GatedRMSNorm(
            cfg.d_inner, group_size=cfg.d_inner // cfg.ngroups, eps=cfg.norm_eps
        )
        self.out_proj = nn.Linear(cfg.d_inner, cfg.d_model, bias=False)

    def _use_triton(self, x: Tensor) -> bool:
        if self.cfg.impl == "torch":
            return False
        if self.cfg.impl == "triton":
            if not x.is_cuda:
                raise ValueError("Mamba2 impl='triton' needs CUDA tensors; use 'auto' or 'torch'")
            load_mamba_chunk_scan_combined()  # raises ImportError naming the install step
            return True
        return x.is_cuda and mamba_ssm_available()

    def forward(self, u: Tensor) -> Tensor:
        """Args: u (B, T, D). Returns: (B, T, D)."""
        cfg = self.cfg
        b, t, _ = u.shape
        h, p, g, n = cfg.nheads, cfg.headdim, cfg.ngroups, cfg.d_state
        zxbcdt = self.in_proj(u)  # (B, T, 2·H·P + 2·G·N + H)
        # z (B, T, H·P), xbc (B, T, H·P + 2·G·N), dt (B, T, H)
        z, xbc, dt = torch.split(zxbcdt, [cfg.d_inner, cfg.conv_dim, h], dim=-1)
        xbc = self.conv1d(xbc.transpose(1, 2))[..., :t]  # (B, H·P + 2·G·N, T): causal part
        xbc = F.silu(xbc).transpose(1, 2)  # (B, T, H·P + 2·G·N)
        # x (B, T, H·P), bmat and cmat (B, T, G·N)
        x, bmat, cmat = torch.split(xbc, [cfg.d_inner, g * n, g * n], dim=-1)
        x = x.reshape(b, t, h, p)  # (B, T, H, P)
        bmat = bmat.reshape(b, t, g, n)  # (B, T, G, N)
        cmat = cmat.reshape(b, t, g, n)  # (B, T, G, N)
        a = -torch.exp(self.A_log.float())  # (H,)
        if self._use_triton(x):
            kernel = load_mamba_chunk_scan_combined()
            y = kernel(
                x,
                dt,
                a,
                bmat,
                cmat,
                cfg.chunk_size,
                D=self.D,
                dt_bias=self.dt_bias,
                dt_softplus=True,
            )  # (B, T, H, P)
        else:
            step = F.softplus(dt.float() + self.dt_bias.float())  # (B, T, H)
            y = ssd_chunked(x, step, a, bmat, cmat, cfg.chunk_size, D=self.D)  # (B, T, H, P)
        assert isinstance(y, Tensor)
        y = y.reshape(b, t, cfg.d_inner)  # (B, T, H·P)
        y = self.norm(y, z)  # (B, T, H·P)
        out: Tensor = self.out_proj(y)  # (B, T, D)
        return out
