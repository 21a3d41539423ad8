"""aira_async."""

from __future__ import annotations
