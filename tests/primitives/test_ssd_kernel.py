"""The one-chunk SSD kernels (primitives/kernels/ssd.py).

On the CPU the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, read when the
kernels are defined, so the check runs in a fresh subprocess); on a GPU (``-m gpu``) compiled,
in fp32 and bf16. Both compare the output and the gradients of xbc, dt, A and D with
:func:`primitives.mamba2.ssd_one_chunk` on the same x, B and C slices.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from primitives.kernels.ssd import ssd_supported, ssd_xbc
from primitives.mamba2 import ssd_one_chunk
from primitives.model import ModelConfig
from tests.primitives.kernel_checks import (
    HAS_TRITON,
    assert_same_without_kernel,
    errors_against_reference,
    interpreter_test,
    print_fused_differences,
    print_interpreter_errors,
    reference_test_on_gpu,
)

# (K, B, T, H, P, G, N): one group and several, T not a power of two, one token, head and state
# widths below the kernels' tiles of 16 and between powers of two
SHAPES = [
    (2, 3, 37, 4, 16, 1, 16),
    (1, 2, 20, 2, 8, 2, 16),
    (1, 1, 1, 2, 16, 1, 16),
    (2, 1, 64, 4, 16, 2, 24),
]
GPU_SHAPES = [*SHAPES, (4, 16, 127, 4, 64, 1, 128)]  # and the proxy's shape


def reference(xbc: Tensor, step: Tensor, a: Tensor, d: Tensor, h: int, g: int, n: int) -> Tensor:
    k, b, t, c = xbc.shape
    e = c - 2 * g * n
    x, bm, cm = torch.split(xbc, [e, g * n, g * n], dim=-1)
    y = ssd_one_chunk(
        x.reshape(k, b, t, h, e // h),
        step,
        a[:, None, :],
        bm.reshape(k, b, t, g, n),
        cm.reshape(k, b, t, g, n),
        D=d[:, None, :],
    )
    return y.reshape(k, b, t, e)


def max_errors(shape: tuple[int, ...], device: str, dtype: torch.dtype) -> list[float]:
    """Relative max errors of (y, dxbc, dstep, da, dd) against the fp32 reference."""
    k, b, t, h, p, g, n = shape
    gen = torch.Generator().manual_seed(sum(shape))
    host = [
        torch.randn(k, b, t, h * p + 2 * g * n, generator=gen),
        F.softplus(torch.randn(k, b, t, h, generator=gen)),
        -torch.exp(0.5 * torch.randn(k, h, generator=gen)),
        torch.randn(k, h, generator=gen),
    ]
    dy = torch.randn(k, b, t, h * p, generator=gen)
    ins = [host[0].to(device, dtype)] + [v.to(device) for v in host[1:]]
    ins = [v.requires_grad_(True) for v in ins]
    y = ssd_xbc(*ins, heads=h, groups=g, d_state=n)
    assert y.shape == (k, b, t, h * p) and y.dtype == dtype
    grads = torch.autograd.grad(y, ins, dy.to(device, dtype))
    refs = [v.to(device).requires_grad_(True) for v in host]
    return errors_against_reference(
        y, grads, lambda *v: reference(*v, h, g, n), refs, dy.to(device)
    )


def interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1 (CPU tensors, fp32)."""
    print_interpreter_errors(SHAPES, max_errors)


def fused_interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1: three fused (Mb M) candidates on the CPU give
    the same logits and parameter gradients through the kernels as through batched products
    (fp32), so the fused block's slicing, casts and autograd are right."""
    shape = {"d_model": 32, "d_state": 16, "headdim": 16, "chunk_size": 64}
    cfg = ModelConfig(layers=("Mb", "M"), vocab_size=16, **shape)
    print_fused_differences(cfg, "ssd_supported", "fused (Mb M) x3")


test_kernels_match_reference_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_ssd_kernel", len(SHAPES)
)


test_fused_mamba_through_kernels_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_ssd_kernel", 1, check="fused_interpreter_check"
)


def test_supported_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda, bf16 = torch.device("cuda"), torch.bfloat16
    assert not ssd_supported(torch.device("cpu"), 127, 64, 128, bf16)
    assert ssd_supported(cuda, 127, 64, 128, bf16) == HAS_TRITON
    assert ssd_supported(cuda, 127, 64, 128, torch.float16) == HAS_TRITON
    assert not ssd_supported(cuda, 127, 64, 128, torch.float32)  # fp32 stays with the products
    assert not ssd_supported(cuda, 129, 64, 128, bf16)  # longer than one tile of tokens
    assert not ssd_supported(cuda, 127, 64, 256, bf16)  # a state wider than the tiles
    monkeypatch.setenv("AIRA_TRITON_SSD", "0")
    assert not ssd_supported(cuda, 127, 64, 128, bf16)


def test_mismatched_shapes_are_named() -> None:
    xbc, step, a = torch.zeros(2, 1, 4, 24), torch.zeros(2, 1, 4, 2), torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"xbc \(2, 1, 4, 24\) does not hold 3 heads"):
        ssd_xbc(xbc, step, a, a, heads=3, groups=1, d_state=4)
    with pytest.raises(ValueError, match=r"step \(2, 1, 4, 2\), a \(2, 3\) and d \(2, 2\)"):
        ssd_xbc(xbc, step, torch.zeros(2, 3), a, heads=2, groups=1, d_state=4)
    with pytest.raises(ValueError, match="T=200, P=8, N=4: the kernels take T <= 128"):
        ssd_xbc(torch.zeros(1, 1, 200, 24), torch.zeros(1, 1, 200, 2), a[:1], a[:1],
                heads=2, groups=1, d_state=4)  # fmt: skip


# bf16: with one token dL/dt is one short sum per head; its error measured 3.7e-2 of its largest
# entry on an H200 (stop 13)
test_kernels_match_reference_on_gpu = reference_test_on_gpu(
    max_errors, GPU_SHAPES, [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)]
)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_mamba_same_with_and_without_kernel() -> None:
    """The fused evaluator's one-chunk Mamba2 through the kernels == through products (bf16
    autocast, the products' dtype there too)."""
    shape = {"d_model": 128, "n_heads": 16, "d_state": 16, "headdim": 32, "chunk_size": 128}
    cfg = ModelConfig(layers=("Mb", "M", "Mb", "M"), vocab_size=16, **shape)
    assert_same_without_kernel(
        cfg, "ssd_supported", out_tol=3e-2, grad_tol=5e-2, autocast=torch.bfloat16
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp32_on_gpu_is_named() -> None:
    xbc, step, a = (torch.zeros(*s, device="cuda") for s in ((1, 1, 4, 24), (1, 1, 4, 2), (1, 2)))
    with pytest.raises(ValueError, match=r"torch\.float32 on CUDA: the kernels take bf16 or fp16"):
        ssd_xbc(xbc, step, a, a, heads=2, groups=1, d_state=4)
