"""Is a run's daemon alive? Read from the archive's heartbeat and the owner's pid."""

from __future__ import annotations

import os
import time

from store import RunRecord, RunStatus

ALIVE_AFTER_S = 15.0
"""A heartbeat younger than this, from a live process, means the daemon is running."""


def pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def daemon_alive(run: RunRecord, *, now: float | None = None) -> bool:
    """True when the run says RUNNING, its heartbeat is fresh and its process exists."""
    if run.status != RunStatus.RUNNING or run.heartbeat_at is None:
        return False
    age = (time.time() if now is None else now) - run.heartbeat_at
    return age < ALIVE_AFTER_S and pid_alive(run.pid)
