"""The MLP block kernels (primitives/kernels/swiglu.py).

On the CPU the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, read when the
kernels are defined, so the check runs in a fresh subprocess); on a GPU (``-m gpu``) compiled,
in bf16 and fp16. Both compare the output and the gradients of x, the norm's weight, w13 and w2
with the naive block's formula, x + (silu(n w1ᵀ) ⊙ (n w3ᵀ)) w2ᵀ with n = RMSNorm(x) ⊙ weight,
per candidate.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from primitives.kernels.swiglu import swiglu_block, swiglu_supported
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

# (K, M, D, F): several row and hidden blocks, rows and hidden channels not a multiple of the
# blocks, a width that is not a power of two, one row
SHAPES = [
    (2, 37, 32, 48),
    (1, 16, 16, 16),
    (3, 70, 48, 40),
    (1, 1, 16, 24),
]
GPU_SHAPES = [*SHAPES, (4, 16 * 127, 128, 352)]  # and the proxy's shape


EPS = 1e-5


def reference(x: Tensor, weight: Tensor, w13: Tensor, w2: Tensor) -> Tensor:
    n = F.rms_norm(x, (x.shape[-1],), eps=EPS) * weight[:, None, :]  # (K, M, D)
    gate, up = torch.bmm(n, w13.transpose(1, 2)).chunk(2, dim=-1)  # (K, M, F) each
    return x + torch.bmm(F.silu(gate) * up, w2.transpose(1, 2))  # (K, M, D)


def max_errors(shape: tuple[int, ...], device: str, dtype: torch.dtype) -> list[float]:
    """Relative max errors of (out, dx, dweight, dw13, dw2) against the fp32 reference (x and
    the products in ``dtype``, the norm's weight in fp32, as in the fused evaluator)."""
    k, m, d, f = shape
    gen = torch.Generator().manual_seed(sum(shape))
    host = [
        torch.randn(k, m, d, generator=gen) * 3.0,  # an RMS far from 1
        1.0 + 0.5 * torch.randn(k, d, generator=gen),
        torch.randn(k, 2 * f, d, generator=gen) / d**0.5,
        torch.randn(k, d, f, generator=gen) / f**0.5,
    ]
    dy = torch.randn(k, m, d, generator=gen)
    dtypes = [dtype, torch.float32, dtype, dtype]
    ins = [t.to(device, dt).requires_grad_(True) for t, dt in zip(host, dtypes, strict=True)]
    y = swiglu_block(*ins, eps=EPS)
    assert y.shape == (k, m, d) and y.dtype == dtype
    grads = torch.autograd.grad(y, ins, dy.to(device, dtype))
    assert [g.dtype for g in grads] == dtypes
    refs = [t.to(device).requires_grad_(True) for t in host]
    return errors_against_reference(y, grads, reference, refs, dy.to(device))


def interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1 (CPU tensors, fp32)."""
    print_interpreter_errors(SHAPES, max_errors)


def fused_interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1: three fused (mA M M) candidates on the CPU
    give the same logits and parameter gradients through the kernels as through batched
    products (fp32), so the fused block's reshapes, casts and autograd are right."""
    cfg = ModelConfig(layers=("mA", "M", "M"), vocab_size=16, d_model=32, n_heads=4)
    print_fused_differences(cfg, "swiglu_supported", "fused (mA M M) x3")


test_kernels_match_reference_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_swiglu", len(SHAPES)
)


test_fused_mlp_through_kernels_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_swiglu", 1, check="fused_interpreter_check"
)


def test_supported_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    bf16 = torch.bfloat16
    assert not swiglu_supported(torch.device("cpu"), 128, bf16)
    assert swiglu_supported(cuda, 128, bf16) == HAS_TRITON
    assert swiglu_supported(cuda, 128, torch.float16) == HAS_TRITON
    assert not swiglu_supported(cuda, 128, torch.float32)  # fp32 stays with the products
    assert not swiglu_supported(cuda, 512, bf16)  # rows wider than the kernels' tiles
    monkeypatch.setenv("AIRA_TRITON_SWIGLU", "0")
    assert not swiglu_supported(cuda, 128, bf16)


def test_mismatched_shapes_are_named() -> None:
    x, norm = torch.zeros(2, 5, 8), torch.ones(2, 8)
    with pytest.raises(ValueError, match=r"w13 \(2, 12, 8\) and w2 \(3, 8, 6\) do not match"):
        swiglu_block(x, norm, torch.zeros(2, 12, 8), torch.zeros(3, 8, 6), EPS)
    with pytest.raises(ValueError, match=r"w13 \(2, 10, 8\) is not the gate and up rows"):
        swiglu_block(x, norm, torch.zeros(2, 10, 8), torch.zeros(2, 8, 6), EPS)
    with pytest.raises(ValueError, match=r"norm weight \(2, 7\) does not match x: expected"):
        swiglu_block(x, torch.ones(2, 7), torch.zeros(2, 12, 8), torch.zeros(2, 8, 6), EPS)
    with pytest.raises(ValueError, match="width 300: the kernels take rows of at most 256"):
        swiglu_block(
            torch.zeros(1, 2, 300), torch.ones(1, 300), torch.zeros(1, 4, 300),
            torch.zeros(1, 300, 2), EPS,
        )  # fmt: skip
    with pytest.raises(ValueError, match="mixed product dtypes"):
        w2_64 = torch.zeros(2, 8, 6, dtype=torch.float64)
        swiglu_block(x, norm, torch.zeros(2, 12, 8), w2_64, EPS)


test_kernels_match_reference_on_gpu = reference_test_on_gpu(
    max_errors, GPU_SHAPES, [(torch.bfloat16, 2e-2), (torch.float16, 1e-2)]
)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_mlp_same_with_and_without_kernel() -> None:
    """The fused evaluator's MLP through the kernels == through batched products (bf16 autocast,
    the products' dtype there too)."""
    cfg = ModelConfig(layers=("mA", "M", "M"), vocab_size=16, d_model=128, n_heads=16)
    assert_same_without_kernel(
        cfg, "swiglu_supported", out_tol=2e-2, grad_tol=5e-2, autocast=torch.bfloat16
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp32_on_gpu_is_named() -> None:
    x, norm = torch.zeros(1, 4, 16, device="cuda"), torch.ones(1, 16, device="cuda")
    w13, w2 = torch.zeros(1, 48, 16, device="cuda"), torch.zeros(1, 16, 24, device="cuda")
    with pytest.raises(ValueError, match=r"torch\.float32 products on CUDA: the kernels take"):
        swiglu_block(x, norm, w13, w2, EPS)
