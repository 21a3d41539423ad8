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

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests.primitives.kernel_checks import HAS_TRITON

MODULES = ("test_tiny_attention", "test_swiglu", "test_causal_conv", "test_ssd_kernel")
# torch dtype -> Triton's pointer element type
_ELEMENT = {
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float32: "fp32",
    torch.int32: "i32",
    torch.int64: "i64",
}


def _scalar_type(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return "*" + _ELEMENT[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__} argument {value!r}")


def _captured_launches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any], Any]]:
    """(kernel, its arguments by name, config) for every configuration the autotuner would time
    in every launch of the modules' GPU checks at their largest shapes (bf16, CPU tensors)."""
    from triton.runtime.autotuner import Autotuner

    launches: list[tuple[Any, dict[str, Any], Any]] = []

    def capture(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        self.nargs = dict(zip(self.arg_names, args, strict=False))
        configs = self.prune_configs(kwargs)
        named = self.nargs | kwargs
        self.nargs = None
        launches.extend((self.fn, named, config) for config in configs)

    monkeypatch.setattr(Autotuner, "run", capture)
    import importlib

    for name in MODULES:
        module = importlib.import_module(f"tests.primitives.{name}")
        module.max_errors(module.GPU_SHAPES[-1], "cpu", torch.bfloat16)
    return launches


def _compile_jobs(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any, dict, dict]]:
    """(label, kernel, signature, constexprs and options) per distinct captured launch."""
    seen = set()
    for fn, named, config in _captured_launches(monkeypatch):
        constants = named | config.kwargs
        signature = {}
        for param in fn.params:
            if param.is_constexpr:
                signature[param.name] = "constexpr"
            else:
                signature[param.name] = _scalar_type(constants.pop(param.name))
        options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
        if config.maxnreg is not None:
            options["maxnreg"] = config.maxnreg
        key = (fn.__name__, fn.fn.__module__, repr(sorted(signature.items())), repr(constants))
        key += (repr(sorted(options.items())),)
        if key in seen:
            continue
        seen.add(key)
        label = f"{fn.fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__} {config}"
        yield label, fn, signature, {"constexprs": constants, "options": options}


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.timeout(900)
def test_every_kernel_compiles_for_sm90_in_every_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", 90, 32)
    compiled: dict[str, int] = {}
    for label, fn, signature, rest in _compile_jobs(monkeypatch):
        src = ASTSource(fn, signature, constexprs=rest["constexprs"])
        try:
            kernel = triton.compile(src, target=target, options=rest["options"])
        except Exception as exc:  # name the launch that failed
            raise AssertionError(f"{label}: {type(exc).__name__}: {exc}") from exc
        assert kernel.asm["cubin"], label
        name = label.split(" ")[0]
        compiled[name] = compiled.get(name, 0) + 1
    # every kernel of the four modules, each in at least one configuration
    assert set(compiled) == {
        "_tiny_attention_triton._fwd_kernel",
        "_tiny_attention_triton._bwd_kernel",
        "_swiglu_triton._fwd_kernel",
        "_swiglu_triton._bwd_kernel",
        "_causal_conv_triton._fwd_kernel",
        "_causal_conv_triton._pre_grad_kernel",
        "_causal_conv_triton._dx_kernel",
        "_ssd_triton._fwd_kernel",
        "_ssd_triton._bwd_kernel",
    }, compiled
