"""The task registry: which tasks the daemon can search, their direction and description.

The description is written the way an AIRS-Bench `project_description.md` states a task; LLM agents
receive it as their project description.
"""

from __future__ import annotations

from dataclasses import dataclass

from aira_async.config import TaskConfig
from aira_async.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    name: str
    metric: str
    maximize: bool
    fidelities: tuple[str, ...]
    description: str


_MAD = """\
# Task: MAD (mechanistic architecture design) proxy
Design the layer arrangement of a small sequence model. The model is a stack of {length} residual
pre-norm blocks; each block is one primitive: `mA` (multi-head causal attention), `M` (SwiGLU MLP)
or `Mb` (Mamba2 state-space mixer). Allowed primitives: {alphabet}.
The arrangement is trained from scratch on the six MAD synthetic tasks (in-context recall, noisy
in-context recall, fuzzy in-context recall, selective copying, compression, memorization) and
scored by mean accuracy (higher is better). You are scored on a held-out validation split.
Submit exactly {length} primitives separated by spaces, e.g. `{example}`.
"""

_SYNTHETIC = """\
# Task: synthetic arrangement search
Find the arrangement of {length} primitives from {alphabet} with the highest score (in [0, 1],
higher is better). Submit exactly {length} primitives separated by spaces, e.g. `{example}`.
"""

TASKS: dict[str, TaskSpec] = {
    "mad": TaskSpec(
        name="mad",
        metric="mean_accuracy",
        maximize=True,
        fidelities=("smoke", "paper"),
        description=_MAD,
    ),
    "synthetic": TaskSpec(
        name="synthetic",
        metric="score",
        maximize=True,
        fidelities=("exact",),
        description=_SYNTHETIC,
    ),
}


def task_spec(task: TaskConfig) -> TaskSpec:
    """The spec of `task`, checking its name and fidelity."""
    spec = TASKS.get(task.name)
    if spec is None:
        raise ConfigError(f"task.name: unknown task {task.name!r} (known: {', '.join(TASKS)})")
    if task.name == "synthetic":
        return spec  # one exact fidelity; the configured name is only recorded
    if task.fidelity not in spec.fidelities:
        raise ConfigError(
            f"task.fidelity: unknown fidelity {task.fidelity!r} for {task.name}"
            f" (known: {', '.join(spec.fidelities)})"
        )
    return spec


def describe(task: TaskConfig) -> str:
    spec = task_spec(task)
    example = " ".join((task.alphabet * task.length)[: task.length])
    return spec.description.format(
        length=task.length, alphabet=", ".join(task.alphabet), example=example
    )
