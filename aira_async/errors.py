"""Errors raised by the daemon layer.

    AiraError
    ├── ConfigError          (also a ValueError) a population file or override is invalid
    ├── RunStateError        the archive does not hold what the command needs
    └── EvaluationError      the evaluation queue was used wrongly (closed, unknown task)

Failures of a single LLM call or evaluation are *not* exceptions at this level: they become node
statuses with their reason (see `aira_async.agents` and `aira_async.gpu_queue`).
"""

from __future__ import annotations


class AiraError(Exception):
    """Root of the errors the daemon raises on purpose."""


class ConfigError(AiraError, ValueError):
    """Raised while loading a population file or applying CLI overrides; names the bad key."""


class RunStateError(AiraError):
    """Raised when the archive holds no run to resume, or already holds one for `aira run`."""


class EvaluationError(AiraError):
    """Raised when a job is submitted to a closed queue or names a task no worker can run."""
