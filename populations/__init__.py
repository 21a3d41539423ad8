"""populations."""

from __future__ import annotations
