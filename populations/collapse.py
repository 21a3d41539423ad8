"""Diversity-collapse monitor: per-island metrics, thresholds, and the response they call for.

Peers lose diversity silently (every child on one island, duplicates exploding through
migration). Here each island is checked every `CollapseRule.every_nodes` finished nodes over its
most recent `window` nodes:

- **duplicate rate**: the fraction of those nodes repeating an arrangement seen before in the
  window (`diversity.duplicate_rate`); collapse when it is *above* `max_duplicate_rate`;
- **layer entropy**: the mean per-layer primitive entropy, normalised to [0, 1]
  (`diversity.mean_layer_entropy`); collapse when it is *below* `min_entropy`;
- **effective number of lineages**: the Hill number of the window's lineage roots
  (`diversity.effective_lineages`, followed through all of the island's nodes); collapse when it
  is *below* `min_lineages`.

A threshold left as None is not checked. When one is crossed the configured `Response` applies:
``log`` only records an event, ``explore`` makes the island's agents Draft fresh arrangements for
`explore_steps` steps, ``reseed`` sends the island the elite (top `reseed_k`) of the best other
island, as migrants. Pure: the daemon's island service applies the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from populations import diversity
from populations.records import NodeRecord


class Response(StrEnum):
    """What the daemon does when an island collapses."""

    LOG = "log"
    EXPLORE = "explore"
    RESEED = "reseed"


@dataclass(frozen=True, slots=True, kw_only=True)
class CollapseRule:
    """Settings of the collapse monitor (see the module docstring).

    Attributes:
        every_nodes: check an island each time this many more of its nodes finished (None: off).
        window: how many of the island's most recent nodes are measured.
        max_duplicate_rate / min_entropy / min_lineages: thresholds (None: not checked).
        response: log, explore or reseed.
        explore_steps: steps of forced Drafts per agent for ``explore``.
        reseed_k: migrants sent for ``reseed``.
    """

    every_nodes: int | None = None
    window: int = 30
    max_duplicate_rate: float | None = 0.5
    min_entropy: float | None = 0.2
    min_lineages: float | None = 1.5
    response: Response = Response.LOG
    explore_steps: int = 2
    reseed_k: int = 2

    def __post_init__(self) -> None:
        if self.response not in tuple(Response):
            known = ", ".join(r.value for r in Response)
            raise ValueError(f"response must be one of {known}, got {self.response!r}")
        object.__setattr__(self, "response", Response(self.response))
        if self.every_nodes is not None and self.every_nodes < 1:
            raise ValueError(f"every_nodes must be >= 1 or None, got {self.every_nodes}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")
        if self.max_duplicate_rate is not None and not 0 <= self.max_duplicate_rate <= 1:
            raise ValueError(f"max_duplicate_rate must be in [0, 1]: {self.max_duplicate_rate}")
        if self.min_entropy is not None and not 0 <= self.min_entropy <= 1:
            raise ValueError(f"min_entropy must be in [0, 1], got {self.min_entropy}")
        if self.min_lineages is not None and self.min_lineages < 0:
            raise ValueError(f"min_lineages must be >= 0, got {self.min_lineages}")
        if self.explore_steps < 1 or self.reseed_k < 1:
            raise ValueError("explore_steps and reseed_k must be >= 1")

    @property
    def enabled(self) -> bool:
        return self.every_nodes is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class IslandHealth:
    """The monitor's measurements of one island, and which thresholds they cross."""

    island: str
    n_nodes: int
    duplicate_rate: float
    entropy: float
    lineages: float
    breached: tuple[str, ...]

    @property
    def collapsed(self) -> bool:
        return bool(self.breached)

    def as_dict(self) -> dict[str, object]:
        return {
            "island": self.island,
            "n_nodes": self.n_nodes,
            "duplicate_rate": self.duplicate_rate,
            "entropy": self.entropy,
            "lineages": self.lineages,
            "breached": list(self.breached),
        }


def checks_due(n_finished: int, rule: CollapseRule) -> int:
    """How many checks an island with `n_finished` finished nodes has had due."""
    return 0 if rule.every_nodes is None else n_finished // rule.every_nodes


def measure(
    island: str,
    nodes: Iterable[NodeRecord],
    rule: CollapseRule,
    *,
    context: Sequence[NodeRecord] | None = None,
) -> IslandHealth:
    """Measure the island's most recent `rule.window` finished nodes (by id) and compare them
    with the thresholds. `context` (default: `nodes`) resolves lineages."""
    finished = sorted((r for r in nodes if r.status.finished), key=lambda r: r.node_id)
    recent = finished[-rule.window :]
    dup = diversity.duplicate_rate(recent)
    entropy = diversity.mean_layer_entropy(recent)
    lineages = diversity.effective_lineages(recent, finished if context is None else context)
    breached = []
    if len(recent) >= rule.window:  # judge full windows only: a young island is not collapsed
        if rule.max_duplicate_rate is not None and dup > rule.max_duplicate_rate:
            breached.append("duplicate_rate")
        if rule.min_entropy is not None and entropy < rule.min_entropy:
            breached.append("entropy")
        if rule.min_lineages is not None and lineages < rule.min_lineages:
            breached.append("lineages")
    return IslandHealth(
        island=island,
        n_nodes=len(recent),
        duplicate_rate=dup,
        entropy=entropy,
        lineages=lineages,
        breached=tuple(breached),
    )
