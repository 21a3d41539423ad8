"""The one place that imports mamba-ssm's Triton SSD kernel.

mamba-ssm is optional (``pip install aira-async[cuda]``) and awkward to import:

- Its sdist ships only Triton kernels for Mamba2; a pure-Python wheel is built with
  ``MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE
  pip install --no-build-isolation mamba-ssm``.
- Such a wheel lacks the compiled Mamba-1 extension ``selective_scan_cuda``, yet
  ``import mamba_ssm`` imports it at package import time. Registering an empty module under that
  name in ``sys.modules`` first lets the Mamba2 Triton path import; Mamba-1 stays unusable, which
  this project never needs.

Everything here is lazy: importing this module imports neither mamba_ssm nor triton. The result
of the first import attempt is cached for the life of the process.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "INSTALL_HINT",
    "load_mamba_chunk_scan_combined",
    "mamba_ssm_available",
]

INSTALL_HINT = (
    "mamba-ssm's Triton kernels are not importable. Install them on a CUDA machine with "
    "`pip install aira-async[cuda]`; if that fails to build, build a pure-Python wheel with "
    "`MAMBA_FORCE_BUILD=TRUE MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE "
    "pip install --no-build-isolation mamba-ssm`. Or set the Mamba2 impl to 'torch'."
)

_STUB_NAME = "selective_scan_cuda"

# None: not tried yet; a callable: the kernel; an ImportError: why it cannot be had.
_cached: Callable[..., Any] | ImportError | None = None


def _register_selective_scan_stub() -> None:
    """Put an empty ``selective_scan_cuda`` in ``sys.modules`` unless a real one exists."""
    if _STUB_NAME in sys.modules:
        return
    if importlib.util.find_spec(_STUB_NAME) is not None:
        return  # a compiled extension is installed: let mamba_ssm import the real one
    stub = types.ModuleType(_STUB_NAME)
    stub.__doc__ = "Empty stand-in registered by aira so that mamba_ssm's Mamba2 path imports."
    sys.modules[_STUB_NAME] = stub


def _try_import() -> Callable[..., Any] | ImportError:
    try:
        _register_selective_scan_stub()
        module = importlib.import_module("mamba_ssm.ops.triton.ssd_combined")
        kernel: Callable[..., Any] = module.mamba_chunk_scan_combined
    except ImportError as exc:  # includes ModuleNotFoundError
        error = ImportError(f"{INSTALL_HINT} (import failed: {exc})")
        error.__cause__ = exc
        return error
    except AttributeError as exc:  # a mamba-ssm version without the combined kernel
        return ImportError(f"{INSTALL_HINT} (mamba_ssm has no mamba_chunk_scan_combined: {exc})")
    except (OSError, RuntimeError) as exc:  # a broken triton/CUDA install fails at import time
        error = ImportError(f"{INSTALL_HINT} (import raised {type(exc).__name__}: {exc})")
        error.__cause__ = exc
        return error
    return kernel


def load_mamba_chunk_scan_combined() -> Callable[..., Any]:
    """Return ``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined``.

    The kernel's signature is ``(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None,
    initial_states=None, seq_idx=None, dt_softplus=False, return_final_states=False, ...)`` with
    x (B, T, H, P), dt (B, T, H), A (H,), B and C (B, T, G, N); it needs CUDA tensors.

    Raises:
        ImportError: mamba-ssm (or triton) is missing or broken; the message names the install
            step.
    """
    global _cached
    if _cached is None:
        _cached = _try_import()
    if isinstance(_cached, ImportError):
        raise _cached
    return _cached


def mamba_ssm_available() -> bool:
    """Whether :func:`load_mamba_chunk_scan_combined` succeeds (cached after the first call)."""
    try:
        load_mamba_chunk_scan_combined()
    except ImportError:
        return False
    return True
