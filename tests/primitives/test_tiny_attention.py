"""The tiny-head attention kernel (primitives/kernels/tiny_attention.py).

On the CPU the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, read when the
kernels are defined, so the check runs in a fresh subprocess); on a GPU (``-m gpu``) they run
compiled, against the SDPA path in fp32 and bf16. Both compare outputs and qkv gradients with
the written-out reference: :func:`primitives.attention.apply_rotary` then
:func:`primitives.attention.attention_ref`.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor

from primitives.attention import apply_rotary, attention_ref, rotary_cos_sin
from primitives.kernels.tiny_attention import tiny_attention, tiny_attention_supported
from primitives.model import ModelConfig
from tests.primitives.kernel_checks import (
    HAS_TRITON,
    assert_same_without_kernel,
    interpreter_test,
    reference_test_on_gpu,
)

# (N, T, H, G, P): GQA and plain heads, T not a power of two, T = 128, P from 4 to 16
SHAPES = [
    (3, 37, 4, 2, 8),
    (2, 16, 2, 2, 4),
    (2, 33, 2, 1, 6),
    (2, 20, 4, 1, 16),
    (2, 128, 16, 16, 8),
]
GPU_SHAPES = [*SHAPES, (4, 127, 16, 16, 8)]  # and the proxy's heads at T = 127
KERNEL_SWITCHES = [{"AIRA_ATTENTION_BWD_HALVES": "0"}]  # the one-block backward kernel


def reference(qkv: Tensor, h: int, g: int, p: int, theta: float) -> Tensor:
    """(N, T, (H + 2G)·P) -> (N, T, H·P) through the model's own rotary and attention code."""
    n, t, _ = qkv.shape
    q, k, v = torch.split(qkv, [h * p, g * p, g * p], dim=-1)
    q = q.reshape(n, t, h, p).transpose(1, 2)  # (N, H, T, P)
    k = k.reshape(n, t, g, p).transpose(1, 2)  # (N, G, T, P)
    v = v.reshape(n, t, g, p).transpose(1, 2)  # (N, G, T, P)
    cos, sin = rotary_cos_sin(t, p, theta, device=qkv.device, dtype=qkv.dtype)
    y = attention_ref(apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v)  # (N, H, T, P)
    return y.transpose(1, 2).reshape(n, t, h * p)


def max_errors(shape: tuple[int, ...], device: str, dtype: torch.dtype) -> tuple[float, float]:
    """Relative max errors (output, qkv gradient) of the kernel against the fp32 reference."""
    n, t, h, g, p = shape
    gen = torch.Generator().manual_seed(sum(shape))
    base = torch.randn(n, t, (h + 2 * g) * p, generator=gen)
    dy = torch.randn(n, t, h * p, generator=gen)
    # the kernel's layout: (K, C, B·T), here with K = 2 candidates of N/2 sequences when N is even
    kk = 2 if n % 2 == 0 else 1
    qkv = base.to(device, dtype).requires_grad_(True)
    packed = qkv.reshape(kk, (n // kk) * t, -1).transpose(1, 2)  # (K, C, B·T)
    y_t = tiny_attention(packed, seq_len=t, n_heads=h, kv_heads=g, rope_theta=10000.0)
    y = y_t.transpose(1, 2).reshape(n, t, h * p)  # (N, T, H·P)
    (grad,) = torch.autograd.grad(y, qkv, dy.to(device, dtype))
    ref_in = base.to(device).requires_grad_(True)
    y_ref = reference(ref_in, h, g, p, 10000.0)
    (grad_ref,) = torch.autograd.grad(y_ref, ref_in, dy.to(device))

    def rel(a: Tensor, b: Tensor) -> float:
        return float((a.detach().float() - b.detach()).abs().max() / b.detach().abs().max())

    return rel(y, y_ref), rel(grad, grad_ref)


def interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1 (CPU tensors, fp32)."""
    for shape in SHAPES:
        out_err, grad_err = max_errors(shape, "cpu", torch.float32)
        assert out_err < 1e-5 and grad_err < 1e-5, (shape, out_err, grad_err)
        print(shape, f"{out_err:.2e} {grad_err:.2e}")


def one_block_interpreter_check() -> None:
    """As :func:`interpreter_check`, with the backward pass's one-block kernel for every shape
    (``AIRA_ATTENTION_BWD_HALVES=0``; by default sequences of 17 or more tokens take the
    two-halves kernel)."""
    os.environ.update(KERNEL_SWITCHES[0])
    interpreter_check()


test_kernel_matches_reference_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_tiny_attention", len(SHAPES)
)


test_one_block_backward_matches_reference_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_tiny_attention", len(SHAPES), check="one_block_interpreter_check"
)


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setenv("AIRA_TINY_ATTENTION", "0")
    assert not tiny_attention_supported(127, 8, cuda)
    monkeypatch.setenv("AIRA_TINY_ATTENTION", "1")
    assert tiny_attention_supported(127, 8, cuda) == HAS_TRITON


def test_supported_shapes() -> None:
    cuda = torch.device("cuda")
    assert not tiny_attention_supported(127, 8, torch.device("cpu"))
    assert not tiny_attention_supported(129, 8, cuda)  # longer than one block
    assert not tiny_attention_supported(127, 7, cuda)  # odd head dimension
    assert not tiny_attention_supported(127, 32, cuda)  # a head larger than the kernel's
    assert tiny_attention_supported(127, 8, cuda) == HAS_TRITON


def test_bad_packing_is_named() -> None:
    with pytest.raises(ValueError, match=r"qkv \(K, 40, 8\) is not"):
        tiny_attention(torch.zeros(1, 40, 8), seq_len=4, n_heads=2, kv_heads=2, rope_theta=1e4)
    with pytest.raises(ValueError, match=r"qkv \(K, 48, 10\) is not"):
        tiny_attention(torch.zeros(1, 48, 10), seq_len=4, n_heads=2, kv_heads=2, rope_theta=1e4)
    with pytest.raises(ValueError, match="kv_heads 3 must divide n_heads 4"):
        tiny_attention(torch.zeros(1, 80, 8), seq_len=4, n_heads=4, kv_heads=3, rope_theta=1e4)


# fp32: tl.dot uses TF32 tensor cores; bf16: bf16 inputs, fp32 softmax
test_kernel_matches_reference_on_gpu = reference_test_on_gpu(
    max_errors, GPU_SHAPES, [(torch.float32, 5e-3), (torch.bfloat16, 3e-2)]
)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_one_block_backward_on_gpu(
    shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-block backward kernel (switched to) against the reference, bf16."""
    for name, value in KERNEL_SWITCHES[0].items():
        monkeypatch.setenv(name, value)
    errors = max_errors(shape, "cuda", torch.bfloat16)
    assert max(errors) < 3e-2, errors


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_model_same_with_and_without_kernel() -> None:
    """The fused evaluator's attention through the kernel == through SDPA (fp32, same weights)."""
    cfg = ModelConfig(layers=("mA", "M", "mA", "M"), vocab_size=16, d_model=128, n_heads=16)
    assert_same_without_kernel(cfg, "tiny_attention_supported", out_tol=5e-3, grad_tol=2e-2)
