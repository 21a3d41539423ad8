"""Every Triton kernel compiles for the H100 and H200 (sm_90) on the CPU, in every autotuned
configuration, at the proxy's shapes in bf16.

Triton's interpreter, which runs the kernels in the other CPU tests, executes their Python and
never meets Triton's compiler: a name bound before a loop and rebound inside it with another type
compiles on no GPU but runs in the interpreter (the SSD kernels at stop 13, the MLP block kernels
at stop 16, each found only on a lent GPU). Here each kernel module's GPU check at its largest
shape runs on CPU tensors with every Triton launch captured instead of run (the wrappers' own
shapes, strides, dtypes and constants, and the configurations the autotuner would time after
its pruning), and each captured launch goes through Triton's front end, LLVM and ptxas for
sm_90, as it would on the GPU, without one.
"""

from __future__ import annotations

import pytest
import torch

from tests.primitives.kernel_checks import HAS_TRITON, gpu_check_launches


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.timeout(900)
def test_every_kernel_compiles_for_sm90_in_every_configuration() -> None:
    compiled: dict[str, int] = {}
    for launch in gpu_check_launches():
        try:
            kernel = launch.compile_sm90()
        except Exception as exc:  # name the launch that failed
            raise AssertionError(f"{launch.label}: {type(exc).__name__}: {exc}") from exc
        assert kernel.asm["cubin"], launch.label
        compiled[launch.name] = compiled.get(launch.name, 0) + 1
    # every kernel of the four modules, each in at least one configuration
    assert set(compiled) == {
        "_tiny_attention_triton._fwd_kernel",
        "_tiny_attention_triton._bwd_kernel",
        "_tiny_attention_triton._bwd_halves_kernel",
        "_swiglu_triton._fwd_kernel",
        "_swiglu_triton._bwd_kernel",
        "_causal_conv_triton._fwd_kernel",
        "_causal_conv_triton._pre_grad_kernel",
        "_causal_conv_triton._dx_kernel",
        "_ssd_triton._fwd_kernel",
        "_ssd_triton._bwd_kernel",
    }, compiled


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.timeout(600)
def test_the_attention_kernels_compile_for_sm90_in_fp32_in_every_configuration() -> None:
    """The attention kernels also take fp32 (the other kernels refuse it). A configuration that
    ptxas cannot fit (the forward's 96-register cap, H200) is pruned, not timed: the autotuner
    survived it but printed the failing kernel's whole assembly."""
    launches = gpu_check_launches(torch.float32, modules=["test_tiny_attention"])
    assert launches
    for launch in launches:
        try:
            assert launch.compile_sm90().asm["cubin"], launch.label
        except Exception as exc:  # name the launch that failed
            raise AssertionError(f"{launch.label}: {type(exc).__name__}: {exc}") from exc
