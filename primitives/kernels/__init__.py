"""Optional fast kernels, imported lazily; each module names its install step when missing."""

from __future__ import annotations

from primitives.kernels.mamba_ssm import (
    INSTALL_HINT,
    load_mamba_chunk_scan_combined,
    mamba_ssm_available,
)

__all__ = ["INSTALL_HINT", "load_mamba_chunk_scan_combined", "mamba_ssm_available"]
