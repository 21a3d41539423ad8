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

_LM = """\
# Task: {title} language-model proxy
Design the layer arrangement of a small language model. The model is a stack of {length} residual
pre-norm blocks; each block is one primitive: `mA` (multi-head causal attention), `M` (SwiGLU MLP)
or `Mb` (Mamba2 state-space mixer). Allowed primitives: {alphabet}.
The arrangement is trained from scratch for next-token prediction on the {title} corpus and
scored by cross-entropy in nats per token (lower is better). You are scored on a held-out
validation split (30% of the training rows).
Submit exactly {length} primitives separated by spaces, e.g. `{example}`.
"""

LM_TASK_NAMES = ("babistories", "dclm")
"""Tasks scored by `primitives.lm_eval` (they need `task.data`)."""

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
    "babistories": TaskSpec(
        name="babistories",
        metric="loss",
        maximize=False,
        fidelities=("smoke", "paper"),
        description=_LM.replace("{title}", "BabiStories"),
    ),
    "dclm": TaskSpec(
        name="dclm",
        metric="loss",
        maximize=False,
        fidelities=("smoke", "paper"),
        description=_LM.replace("{title}", "DCLM subset"),
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
    if task.lower_is_better is not None and task.lower_is_better == spec.maximize:
        direction = "higher" if spec.maximize else "lower"
        raise ConfigError(
            f"task.lower_is_better = {str(task.lower_is_better).lower()} contradicts the"
            f" {task.name} evaluator, whose {spec.metric} is {direction}-is-better"
        )
    if task.name in LM_TASK_NAMES and not task.data:
        raise ConfigError(
            f"task.data: the {task.name} task needs its corpus (hf:ID, a directory or a file;"
            " or set AIRA_DATA_DIR to a folder holding a directory of that name)"
        )
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
    if task.description:
        return task.description
    example = " ".join((task.alphabet * task.length)[: task.length])
    return spec.description.format(
        length=task.length, alphabet=", ".join(task.alphabet), example=example
    )
