"""Checks shared by the Triton kernels' tests: their interpreter run, the fused evaluator giving
the same model with and without one kernel (GPU), and their launches captured on the CPU and
compiled for sm_90 without a GPU (also used by bench/kernel_sass.py)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import primitives.fused as fused
from primitives.kernels._triton import triton_available
from primitives.model import ModelConfig

ROOT = Path(__file__).resolve().parents[2]
HAS_TRITON = triton_available()


def run_in_interpreter(module: str, n_lines: int, check: str = "interpreter_check") -> None:
    """Run ``module.<check>()`` under ``TRITON_INTERPRET=1`` (read when kernels are defined,
    hence a fresh subprocess) and expect one printed line per checked shape."""
    env = os.environ | {"TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    code = f"from {module} import {check} as c; c()"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.splitlines()) == n_lines


def interpreter_test(
    module: str, n_lines: int, check: str = "interpreter_check", timeout_s: int = 300
) -> Callable[[], None]:
    """A test that runs ``module.<check>()`` through :func:`run_in_interpreter` (skipped without
    Triton). Bind it to a ``test_...`` name in the module."""

    @pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
    @pytest.mark.timeout(timeout_s)
    def test() -> None:
        run_in_interpreter(module, n_lines, check=check)

    return test


def relative_error(a: Tensor, ref: Tensor) -> float:
    """max |a - ref| over max |ref|."""
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def errors_against_reference(
    out: Tensor,
    grads: tuple[Tensor, ...],
    reference: Callable[..., Tensor],
    refs: list[Tensor],
    dout: Tensor,
) -> list[float]:
    """Relative errors of a kernel's output and input gradients (any dtype) against
    ``reference(*refs)`` and its gradients for ``dout``, computed in exact fp32 (TF32 off)."""
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ref = reference(*refs)
        ref_grads = torch.autograd.grad(ref, refs, dout)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    pairs = zip((out, *grads), (ref, *ref_grads), strict=True)
    return [relative_error(a.detach().float(), r.detach()) for a, r in pairs]


def print_interpreter_errors(
    shapes: list[tuple[int, ...]], max_errors: Callable[..., list[float]]
) -> None:
    """For a check run by :func:`run_in_interpreter`: ``max_errors(shape, "cpu", fp32)`` of every
    shape within 1e-5, one printed line each."""
    for shape in shapes:
        errors = max_errors(shape, "cpu", torch.float32)
        assert max(errors) < 1e-5, (shape, errors)
        print(shape, " ".join(f"{e:.1e}" for e in errors))


def fused_differences(
    cfg: ModelConfig, switch: str, tokens: Tensor, autocast: torch.dtype | None = None
) -> list[float]:
    """Relative max differences (to the largest entry) of the logits and of every parameter
    gradient of three fused candidates of ``cfg`` (fp32 parameters, seeds 0-2, on the tokens'
    device; under ``autocast`` to that dtype if given) with ``primitives.fused.<switch>``, the
    check that picks a kernel, forced on against forced off. Forcing it on lets Triton's
    interpreter run the kernel on CPU tensors."""

    def run(on: bool) -> tuple[Tensor, list[Tensor]]:
        check = getattr(fused, switch)
        setattr(fused, switch, lambda *args: on)
        cast = torch.autocast(tokens.device.type, autocast) if autocast else nullcontext()
        try:
            model = fused.fused_models([cfg] * 3, [0, 1, 2]).to(tokens.device)
            with cast:
                logits = model(tokens).float()  # (K, B, T, V)
            grads = torch.autograd.grad(logits.square().mean(), list(model.parameters()))
        finally:
            setattr(fused, switch, check)
        return logits.detach(), list(grads)

    (out, grads), (ref, ref_grads) = run(True), run(False)
    pairs = [(out, ref), *zip(grads, ref_grads, strict=True)]
    return [relative_error(a, b) for a, b in pairs]


def print_fused_differences(cfg: ModelConfig, switch: str, label: str) -> None:
    """For a check run by :func:`run_in_interpreter`: :func:`fused_differences` on CPU tensors
    (3 sequences of 21 tokens), all within 1e-5, and one printed line."""
    tokens = torch.randint(0, cfg.vocab_size, (3, 21), generator=torch.Generator().manual_seed(0))
    errors = fused_differences(cfg, switch, tokens)
    assert max(errors) < 1e-5, (label, errors)
    print(f"{label}: {len(errors)} tensors, max relative error {max(errors):.1e}")


def assert_same_without_kernel(
    cfg: ModelConfig,
    switch: str,
    *,
    out_tol: float,
    grad_tol: float,
    autocast: torch.dtype | None = None,
) -> None:
    """:func:`fused_differences` on CUDA for a batch of 4 sequences of 127 tokens: logits within
    ``out_tol``, gradients within ``grad_tol``."""
    tokens = torch.randint(0, cfg.vocab_size, (4, 127), device="cuda")
    out_error, *grad_errors = fused_differences(cfg, switch, tokens, autocast)
    assert out_error < out_tol
    assert max(grad_errors) < grad_tol, grad_errors


def reference_test_on_gpu(
    max_errors: Callable[..., Any],
    shapes: list[tuple[int, ...]],
    tolerances: list[tuple[torch.dtype, float]],
) -> Callable[..., None]:
    """A kernel's GPU test (``-m gpu``, skipped without CUDA): for every shape and (dtype, tol),
    ``max_errors(shape, "cuda", dtype)``, its relative errors against the fp32 reference, all
    below tol. Bind it to a ``test_...`` name in the kernel's test module."""

    @pytest.mark.gpu
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    @pytest.mark.parametrize("shape", shapes)
    @pytest.mark.parametrize(("dtype", "tol"), tolerances)
    def test(shape: tuple[int, ...], dtype: torch.dtype, tol: float) -> None:
        errors = list(max_errors(shape, "cuda", dtype))
        print(f"{shape} {dtype}: " + " ".join(f"{e:.1e}" for e in errors))
        assert max(errors) < tol, errors

    return test


KERNEL_TEST_MODULES = ("test_tiny_attention", "test_swiglu", "test_causal_conv", "test_ssd_kernel")
"""The test modules of the Triton kernels, each with ``max_errors`` and ``GPU_SHAPES``, and
optionally ``KERNEL_SWITCHES``: environments under which the check takes other kernels (each
one's launches are captured too)."""

# torch dtype -> Triton's pointer element type
_ELEMENT = {
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float32: "fp32",
    torch.int32: "i32",
    torch.int64: "i64",
}


def _triton_type(value: object) -> str:
    if isinstance(value, Tensor):
        return "*" + _ELEMENT[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton type for {type(value).__name__} argument {value!r}")


@dataclass(frozen=True)
class KernelLaunch:
    """One launch of an autotuned kernel in one configuration, as Triton would compile it."""

    label: str  # "<module>.<kernel> <config>"
    kernel: Any  # the JITFunction
    signature: dict[str, str]
    constexprs: dict[str, Any]
    options: dict[str, int]

    @property
    def name(self) -> str:
        return self.label.split(" ")[0]

    def compile_sm90(self) -> Any:
        """Triton's front end, LLVM and ptxas for sm_90 (no GPU needed): the compiled kernel."""
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        src = ASTSource(self.kernel, self.signature, constexprs=self.constexprs)
        return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=self.options)


@contextmanager
def _launches_captured() -> Iterator[list[tuple[Any, dict[str, Any], Any]]]:
    """While open, autotuned Triton launches are recorded, not run: (kernel, its arguments by
    name, config) for every configuration the autotuner would time after its pruning."""
    from triton.runtime.autotuner import Autotuner

    launches: list[tuple[Any, dict[str, Any], Any]] = []

    def capture(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        self.nargs = dict(zip(self.arg_names, args, strict=False))
        configs = self.prune_configs(kwargs)
        named = self.nargs | kwargs
        self.nargs = None
        launches.extend((self.fn, named, config) for config in configs)

    run = Autotuner.run
    Autotuner.run = capture  # type: ignore[method-assign]
    try:
        yield launches
    finally:
        Autotuner.run = run  # type: ignore[method-assign]


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored on exit."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def gpu_check_launches(
    dtype: torch.dtype = torch.bfloat16, modules: Sequence[str] = KERNEL_TEST_MODULES
) -> list[KernelLaunch]:
    """Every distinct launch, in every configuration its autotuner would time, of the kernel
    ``modules``' GPU checks at their largest (the proxy's) shapes in ``dtype``: the checks run on
    CPU tensors with the launches captured instead of run."""
    with _launches_captured() as captured:
        for name in modules:
            module = importlib.import_module(f"tests.primitives.{name}")
            for switches in [{}, *getattr(module, "KERNEL_SWITCHES", [])]:
                with _environment(switches):
                    module.max_errors(module.GPU_SHAPES[-1], "cpu", dtype)
    out, seen = [], set()
    for fn, named, config in captured:
        constexprs = named | config.kwargs
        signature = {}
        for param in fn.params:
            if param.is_constexpr:
                signature[param.name] = "constexpr"
            else:
                signature[param.name] = _triton_type(constexprs.pop(param.name))
        options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
        if config.maxnreg is not None:
            options["maxnreg"] = config.maxnreg
        label = f"{fn.fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__} {config}"
        key = (label, repr(sorted(signature.items())), repr(sorted(constexprs.items())))
        if key not in seen:
            seen.add(key)
            out.append(KernelLaunch(label, fn, signature, constexprs, options))
    return out
