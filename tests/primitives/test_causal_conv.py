"""The Mamba2 causal conv + SiLU kernel (primitives/kernels/causal_conv.py).

On the CPU the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, read when the
kernels are defined, so the check runs in a fresh subprocess); on a GPU (``-m gpu``) compiled,
in fp32 and bf16. Both compare the output and the gradients of x, the taps and the bias with
the naive Mamba2 module's conv: ``F.conv1d`` with W - 1 zeros of padding, cut to T tokens.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from primitives.kernels.causal_conv import causal_conv_silu, causal_conv_supported
from primitives.model import ModelConfig
from tests.primitives.kernel_checks import (
    HAS_TRITON,
    assert_same_without_kernel,
    interpreter_test,
    reference_test_on_gpu,
)

# (K, B, T, C, W): several tiles of tokens, T shorter than W, one token, channels not a
# multiple of the channel block, every W the kernel takes besides Mamba2's 4
SHAPES = [
    (2, 3, 37, 40, 4),
    (1, 1, 70, 33, 4),
    (1, 2, 3, 16, 4),
    (2, 1, 1, 8, 4),
    (1, 2, 9, 24, 3),
    (1, 2, 9, 24, 2),
    (1, 1, 5, 8, 1),
]
GPU_SHAPES = [*SHAPES, (4, 16, 127, 512, 4)]  # and the proxy's shape


def reference(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """(K, B, T, C) through each candidate's depthwise ``F.conv1d``, as the naive module does."""
    k, _, t, c = x.shape
    w = weight.shape[-1]
    outs = [
        F.conv1d(x[i].transpose(1, 2), weight[i][:, None, :], bias[i], padding=w - 1, groups=c)
        for i in range(k)
    ]  # (B, C, T + W - 1) each
    return F.silu(torch.stack(outs)[..., :t].transpose(2, 3))


def max_errors(shape: tuple[int, ...], device: str, dtype: torch.dtype) -> list[float]:
    """Relative max errors of (out, dx, dweight, dbias) against the fp32 reference."""
    k, b, t, c, w = shape
    gen = torch.Generator().manual_seed(sum(shape))
    # x is a slice of a wider projection, as in the fused block (rows strided)
    wide = torch.randn(k, b, t, c + 5, generator=gen)
    weight, bias = torch.randn(k, c, w, generator=gen) / w, torch.randn(k, c, generator=gen)
    dy = torch.randn(k, b, t, c, generator=gen)
    ins = [wide.to(device, dtype).requires_grad_(True), weight.to(device), bias.to(device)]
    ins[1].requires_grad_(True)
    ins[2].requires_grad_(True)
    y = causal_conv_silu(ins[0][..., 3 : 3 + c], ins[1], ins[2])
    assert y.shape == (k, b, t, c) and y.dtype == dtype
    grads = torch.autograd.grad(y, ins, dy.to(device, dtype))
    refs = [wide.to(device).requires_grad_(True), weight.to(device), bias.to(device)]
    refs[1].requires_grad_(True)
    refs[2].requires_grad_(True)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # an exact fp32 reference
        y_ref = reference(refs[0][..., 3 : 3 + c], refs[1], refs[2])
    ref_grads = torch.autograd.grad(y_ref, refs, dy.to(device))

    def rel(a: Tensor, r: Tensor) -> float:
        return float((a.detach().float() - r.detach()).abs().max() / r.detach().abs().max())

    return [rel(a, r) for a, r in zip((y, *grads), (y_ref, *ref_grads), strict=True)]


def interpreter_check() -> None:
    """Run in a subprocess with TRITON_INTERPRET=1 (CPU tensors, fp32)."""
    for shape in SHAPES:
        errors = max_errors(shape, "cpu", torch.float32)
        assert max(errors) < 1e-5, (shape, errors)
        print(shape, " ".join(f"{e:.1e}" for e in errors))


test_kernel_matches_reference_in_triton_interpreter = interpreter_test(
    "tests.primitives.test_causal_conv", len(SHAPES)
)


def test_supported_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    assert not causal_conv_supported(torch.device("cpu"), 4)
    assert causal_conv_supported(cuda, 4) == HAS_TRITON
    assert not causal_conv_supported(cuda, 5)  # more taps than the kernel unrolls
    monkeypatch.setenv("AIRA_TRITON_CONV", "0")
    assert not causal_conv_supported(cuda, 4)


def test_mismatched_taps_are_named() -> None:
    x = torch.zeros(2, 1, 4, 8)
    with pytest.raises(ValueError, match=r"weight \(2, 6, 4\) and bias \(2, 8\) do not match"):
        causal_conv_silu(x, torch.zeros(2, 6, 4), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="5 taps: the kernel takes 1 to 4"):
        causal_conv_silu(x, torch.zeros(2, 8, 5), torch.zeros(2, 8))


test_kernel_matches_reference_on_gpu = reference_test_on_gpu(
    max_errors, GPU_SHAPES, [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)]
)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_mamba_same_with_and_without_kernel() -> None:
    """The fused evaluator's Mamba2 through the kernel == through shifted products (fp32)."""
    shape = {"d_model": 128, "n_heads": 16, "d_state": 16, "headdim": 32, "chunk_size": 128}
    cfg = ModelConfig(layers=("Mb", "M", "Mb", "M"), vocab_size=16, **shape)
    assert_same_without_kernel(cfg, "causal_conv_supported", out_tol=1e-4, grad_tol=1e-3)
