"""Shared fixtures: small synthetic populations that run in seconds on two cores."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

SYNTHETIC_POPULATION = """\
[run]
name = "{name}"
seed = {seed}
budget = "{budget}"
shutdown_grace_s = 10
heartbeat_s = 0.2
{max_nodes_line}

[task]
name = "synthetic"
fidelity = "exact"
seed = 3
length = 12
alphabet = ["mA", "M", "Mb"]
test_eval = {test_eval}
latency_s = {latency_s}

[evaluation]
backend = "{backend}"
workers = {workers}
timeout_s = 30

[[islands]]
name = "a"

[[islands]]
name = "b"

[[agents]]
name = "evo-greedy"
island = "a"
proposer = "evolution"
policy = "greedy"
{max_steps_line}

[[agents]]
name = "evo-mcts"
island = "a"
proposer = "evolution"
policy = "mcts"
{max_steps_line}

[[agents]]
name = "random-greedy"
island = "b"
proposer = "random"
policy = "greedy"
{max_steps_line}
"""


def write_population(
    path: Path,
    *,
    name: str = "test",
    seed: int = 0,
    budget: str = "10m",
    max_nodes: int | None = None,
    max_steps: int | None = None,
    test_eval: bool = False,
    latency_s: float = 0.0,
    backend: str = "inline",
    workers: int = 2,
) -> Path:
    """A population file for the synthetic task (see `aira_async.synthetic`)."""
    text = SYNTHETIC_POPULATION.format(
        name=name,
        seed=seed,
        budget=budget,
        max_nodes_line="" if max_nodes is None else f"max_nodes = {max_nodes}",
        max_steps_line="" if max_steps is None else f"max_steps = {max_steps}",
        test_eval="true" if test_eval else "false",
        latency_s=latency_s,
        backend=backend,
        workers=workers,
    )
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def population(tmp_path: Path) -> Path:
    return write_population(tmp_path / "population.toml")
