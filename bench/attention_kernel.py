"""The tiny-head attention kernel against SDPA on the fused evaluator's attention shape.

Times forward + backward of causal RoPE attention over N = K·B sequences (default K 32 x B 128,
T 127, 16 heads of 8 features, bf16) two ways: rotary in PyTorch then
``F.scaled_dot_product_attention`` (whatever backend PyTorch picks), and
:func:`primitives.kernels.tiny_attention.tiny_attention` (rotary inside, channels-first). Prints
milliseconds per call (forward + backward, and the kernel's forward alone) and the
configuration Triton's autotuner chose; writes JSON under --out, named by card and --tag.

Usage: python bench/attention_kernel.py [--k 32] [--b 128] [--t 127] [--tag T] [--out DIR]

``--profile-once`` instead warms the kernel up (autotuning included) and runs one forward and
backward between ``cudaProfilerStart`` and ``cudaProfilerStop``, for a profiler started with
profiling off, e.g. ``ncu --profile-from-start off --section SpeedOfLight ... python
bench/attention_kernel.py --profile-once``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import primitives  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from primitives.attention import apply_rotary, rotary_cos_sin
from primitives.kernels.tiny_attention import tiny_attention


def _time(fn: object, reps: int) -> float:
    """Milliseconds per call of fn() (forward + backward), CUDA events, after 3 warm-up calls."""
    assert callable(fn)
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return float(start.elapsed_time(end)) / reps


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--b", type=int, default=128)
    parser.add_argument("--t", type=int, default=127)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=8)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tag", default="", help="appended to the JSON file's name")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument(
        "--profile-once", action="store_true", help="one profiled call of the kernel (ncu)"
    )
    args = parser.parse_args()
    k, b, t, h, p = args.k, args.b, args.t, args.heads, args.head_dim
    dev, dt = torch.device("cuda"), torch.bfloat16
    qkv_t = torch.randn(k, 3 * h * p, b * t, device=dev, dtype=dt, requires_grad=True)
    dy_t = torch.randn(k, h * p, b * t, device=dev, dtype=dt)
    qkv = torch.randn(k * b, t, 3 * h * p, device=dev, dtype=dt, requires_grad=True)
    dy = torch.randn(k * b, h, t, p, device=dev, dtype=dt)
    cos, sin = rotary_cos_sin(t, p, 1e4, device=dev, dtype=dt)

    def sdpa() -> None:
        q, kk, v = qkv.view(k * b, t, 3, h, p).permute(2, 0, 3, 1, 4)  # (N, H, T, P) each
        y = F.scaled_dot_product_attention(
            apply_rotary(q, cos, sin), apply_rotary(kk, cos, sin), v, is_causal=True
        )
        y.backward(dy)

    def kernel() -> None:
        y = tiny_attention(qkv_t, seq_len=t, n_heads=h, kv_heads=h, rope_theta=1e4)
        y.backward(dy_t)

    def kernel_forward() -> None:
        tiny_attention(qkv_t, seq_len=t, n_heads=h, kv_heads=h, rope_theta=1e4)

    if args.profile_once:
        for _ in range(3):  # autotuning and compilation outside the profiled window
            kernel()
        torch.cuda.cudart().cudaProfilerStart()  # type: ignore[no-untyped-call]
        kernel()
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()  # type: ignore[no-untyped-call]
        return 0

    ms_sdpa, ms_kernel = _time(sdpa, args.reps), _time(kernel, args.reps)
    ms_forward = _time(kernel_forward, args.reps)
    from primitives.kernels import _tiny_attention_triton as tk

    chosen = {
        name: str(getattr(getattr(tk, name), "best_config", None))
        for name in ("_fwd_kernel", "_bwd_kernel")
    }
    card = torch.cuda.get_device_name()
    row = {
        "card": card,
        "torch": torch.__version__,
        "shape": {"sequences": k * b, "T": t, "heads": h, "head_dim": p, "dtype": "bf16"},
        "sdpa_rope_fwd_bwd_ms": ms_sdpa,
        "tiny_attention_fwd_bwd_ms": ms_kernel,
        "tiny_attention_fwd_ms": ms_forward,
        "speedup": ms_sdpa / ms_kernel,
        "autotuned": chosen,
    }
    print(
        f"{card}: {k * b} sequences x T {t}, {h} heads x {p}: SDPA+RoPE {ms_sdpa:.2f} ms, "
        f"tiny_attention {ms_kernel:.2f} ms (fwd+bwd, fwd alone {ms_forward:.2f}) = "
        f"{ms_sdpa / ms_kernel:.1f}x; {chosen}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in card.lower()).strip("-")
    (args.out / f"attention_kernel-{slug}{args.tag}.json").write_text(
        json.dumps(row, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
