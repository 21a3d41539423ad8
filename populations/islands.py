"""Islands and migration rules: who sends to whom, when, and which nodes (pure, no I/O).

Agents are grouped into islands. Every so often an island sends its best nodes to its
neighbours; a migrant is a *reference* to an existing node (the archive's ``migrations`` table
holds one row per (node, receiving island)), never a copy, and every agent of the receiving island
may then Improve it (`SearchTree.import_migrant`).

- **Topologies.** ``ring``: island i sends to island i+1 (in the order given, wrapping around);
  ``random``: each round, each island sends to `n_random` other islands drawn by a generator
  seeded with (seed, island, round), so a resumed run draws the same neighbours; ``full``: every
  island sends to every other one.
- **When.** An island migrates for the r-th time once `every_nodes * r` of its own nodes have
  finished (`rounds_due`), or once `every_s` seconds passed since its last round (`time_due`).
- **What.** `select_migrants`: the top `k` good nodes of the source island's pool (its own
  nodes plus the migrants it received) by validation fitness, best first, the earliest id on ties,
  skipping nodes that belong to the target island (no ping-pong), nodes the target already
  received, and arrangements (proposal keys) the target already holds; each key is sent once
  (no duplicates exploding through migration).

Every function here is deterministic in its arguments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from populations.records import NodeRecord


class Topology(StrEnum):
    """How islands are connected for migration."""

    RING = "ring"
    RANDOM = "random"
    FULL = "full"


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationRule:
    """The migration settings that the pure rules need.

    Attributes:
        topology: ring, random or full.
        every_nodes: migrate after every this many finished nodes of an island (None: never by
            count).
        every_s: migrate when this many seconds passed since the island's last round (None:
            never by time).
        top_k: how many nodes one round sends to each neighbour.
        n_random: neighbours per round under the random topology.
        seed: seeds the random topology.
    """

    topology: Topology = Topology.RING
    every_nodes: int | None = None
    every_s: float | None = None
    top_k: int = 2
    n_random: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.topology not in tuple(Topology):
            known = ", ".join(t.value for t in Topology)
            raise ValueError(f"topology must be one of {known}, got {self.topology!r}")
        object.__setattr__(self, "topology", Topology(self.topology))
        if self.every_nodes is not None and self.every_nodes < 1:
            raise ValueError(f"every_nodes must be >= 1 or None, got {self.every_nodes}")
        if self.every_s is not None and not (self.every_s > 0 and math.isfinite(self.every_s)):
            raise ValueError(f"every_s must be positive or None, got {self.every_s}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.n_random < 1:
            raise ValueError(f"n_random must be >= 1, got {self.n_random}")

    @property
    def enabled(self) -> bool:
        return self.every_nodes is not None or self.every_s is not None

    @property
    def policy(self) -> str:
        """How the migrations table names this rule, e.g. ``"ring:top2"``."""
        return f"{self.topology.value}:top{self.top_k}"


def neighbours(
    islands: Sequence[str], source: str, rule: MigrationRule, round_index: int = 0
) -> tuple[str, ...]:
    """The islands `source` sends to in its round `round_index` (none for a lone island).

    Raises:
        ValueError: if `source` is not in `islands` or names repeat.
    """
    if len(set(islands)) != len(islands):
        raise ValueError(f"islands: names repeat in {list(islands)}")
    if source not in islands:
        raise ValueError(f"source: unknown island {source!r}")
    others = [name for name in islands if name != source]
    if not others:
        return ()
    if rule.topology is Topology.FULL:
        return tuple(others)
    if rule.topology is Topology.RING:
        i = list(islands).index(source)
        return (islands[(i + 1) % len(islands)],)
    rng = random.Random(f"islands:{rule.seed}:{source}:{round_index}")
    picked = rng.sample(others, min(rule.n_random, len(others)))
    return tuple(sorted(picked, key=list(islands).index))


def rounds_due(n_finished: int, rule: MigrationRule) -> int:
    """How many count-triggered rounds an island with `n_finished` own nodes has had due."""
    if rule.every_nodes is None:
        return 0
    return n_finished // rule.every_nodes


def time_due(elapsed_s: float, rule: MigrationRule) -> bool:
    """True when `elapsed_s` since the island's last round reach `every_s`."""
    return rule.every_s is not None and elapsed_s >= rule.every_s


def ranked(records: Iterable[NodeRecord], *, maximize: bool) -> list[NodeRecord]:
    """Good nodes best first by validation fitness (the earliest id on ties), NaN excluded."""
    good = [
        r
        for r in records
        if r.is_good and r.val_fitness is not None and not math.isnan(r.val_fitness)
    ]
    sign = -1.0 if maximize else 1.0
    return sorted(good, key=lambda r: (sign * (r.val_fitness or 0.0), r.node_id))


def select_migrants(
    pool: Iterable[NodeRecord],
    *,
    k: int,
    maximize: bool,
    target_agents: Collection[int] = (),
    received: Collection[int] = (),
    target_keys: Collection[str] = (),
) -> list[NodeRecord]:
    """The nodes one round sends from a source island to one target island.

    Args:
        pool: the source island's nodes: its own and the migrants it received.
        k: at most this many are sent.
        maximize: True when a higher validation fitness is better.
        target_agents: agent ids of the target island: their nodes are never sent back.
        received: node ids the target island already received.
        target_keys: proposal keys the target island already holds (own nodes and received).

    Returns:
        At most `k` good nodes, best first, each with a distinct proposal key not in
        `target_keys`.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    chosen: list[NodeRecord] = []
    keys = set(target_keys)
    for record in ranked(pool, maximize=maximize):
        if record.agent_id in target_agents or record.node_id in received:
            continue
        if record.proposal_key in keys:
            continue
        keys.add(record.proposal_key)
        chosen.append(record)
        if len(chosen) == k:
            break
    return chosen


def best_island(pools: dict[str, list[NodeRecord]], *, maximize: bool, exclude: str) -> str | None:
    """The island (other than `exclude`) whose best good node is best; ties by name."""
    best: tuple[float, str] | None = None
    for name in sorted(pools):
        if name == exclude:
            continue
        top = ranked(pools[name], maximize=maximize)
        if not top or top[0].val_fitness is None:
            continue
        score = top[0].val_fitness if maximize else -top[0].val_fitness
        if best is None or score > best[0]:
            best = (score, name)
    return None if best is None else best[1]
