"""The SwiGLU MLP kernels (primitives/kernels/swiglu.py).

On the CPU the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, read when the
kernels are defined, so the check runs in a fresh subprocess); on a GPU (``-m gpu``) compiled,
in fp32 and bf16. Both compare the output and the gradients of x, w13 and w2 with the naive
module's formula, (silu(x w1ᵀ) ⊙ (x w3ᵀ)) w2ᵀ, per candidate.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from primitives.kernels.swiglu import swiglu_mlp, swiglu_supported
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


def reference(x: Tensor, w13: Tensor, w2: Tensor) -> Tensor:
    gate, up = torch.bmm(x, w13.transpose(1, 2)).chunk(2, dim=-1)  # (K, M, F) each
    return torch.bmm(F.silu(gate) * up, w2.transpose(1, 2))  # (K, M, D)


def max_errors(shape: tuple[int, ...], device: str, dtype: torch.dtype) -> list[float]:
    """Relative max errors of (y, dx, dw13, dw2) against the fp32 reference."""
    k, m, d, f = shape
    gen = torch.Generator().manual_seed(sum(shape))
    host = [
        torch.randn(k, m, d, generator=gen),
        torch.randn(k, 2 * f, d, generator=gen) / d**0.5,
        torch.randn(k, d, f, generator=gen) / f**0.5,
    ]
    dy = torch.randn(k, m, d, generator=gen)
    ins = [t.to(device, dtype).requires_grad_(True) for t in host]
    y = swiglu_mlp(*ins)
    assert y.shape == (k, m, d) and y.dtype == dtype
    grads = torch.autograd.grad(y, ins, dy.to(device, dtype))
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
    x = torch.zeros(2, 5, 8)
    with pytest.raises(ValueError, match=r"w13 \(2, 12, 8\) and w2 \(3, 8, 6\) do not match"):
        swiglu_mlp(x, torch.zeros(2, 12, 8), torch.zeros(3, 8, 6))
    with pytest.raises(ValueError, match=r"w13 \(2, 10, 8\) is not the gate and up rows"):
        swiglu_mlp(x, torch.zeros(2, 10, 8), torch.zeros(2, 8, 6))
    with pytest.raises(ValueError, match="width 300: the kernels take rows of at most 256"):
        swiglu_mlp(torch.zeros(1, 2, 300), torch.zeros(1, 4, 300), torch.zeros(1, 300, 2))
    with pytest.raises(ValueError, match="mixed dtypes"):
        swiglu_mlp(x, torch.zeros(2, 12, 8), torch.zeros(2, 8, 6, dtype=torch.float64))


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
    x = torch.zeros(1, 4, 16, device="cuda")
    with pytest.raises(ValueError, match=r"torch\.float32 on CUDA: the kernels take bf16 or fp16"):
        swiglu_mlp(x, torch.zeros(1, 48, 16, device="cuda"), torch.zeros(1, 16, 24, device="cuda"))
