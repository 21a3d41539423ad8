"""What the Triton kernels share: whether Triton is installed, whether its CPU interpreter runs
them (tests), and autotuning that steps aside in the interpreter. Imports Triton only when a
kernel module asks for autotuning."""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import torch

HALF_DTYPES = (torch.bfloat16, torch.float16)
"""The dtypes the SwiGLU and SSD kernels take on CUDA (autocast's); fp32 keeps the products."""

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
"""Triton's CPU interpreter (``TRITON_INTERPRET=1``, read at import): no device to time
configurations on, so kernels take their blocks as launch keywords instead."""


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def autotuned(configs: list[Any], key: list[str], **kwargs: Any) -> Any:
    """``triton.autotune(configs, key, **kwargs)`` on a GPU (timed once per key); in the
    interpreter the kernel unchanged."""
    if INTERPRETED:
        return lambda fn: fn
    import triton

    return triton.autotune(configs=configs, key=key, **kwargs)
