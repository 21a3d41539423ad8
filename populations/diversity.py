"""Diversity analysis of a population: pure functions over `NodeRecord`s (no I/O).

The records usually come from the archive (`store.Archive.nodes`); `aira query diversity` and
`aira report` show these numbers. Conventions:

- A record's arrangement is its ``proposal_key`` split on spaces. Only *usable* records count:
  a non-empty key whose length is the most common one (so an invalid proposal, stored with its raw
  text, is left out). Records are taken in ascending node-id order wherever order matters.
- Entropies are Shannon entropies in bits. An *effective number* is the Hill number of order 1,
  ``exp(H)`` with H in nats: the number of equally common kinds that would give the same
  entropy (4 lineages of equal size: 4.0; one lineage: 1.0).
- Lineages are followed through ``parent_id`` among the records given as `context` (by default
  the records themselves), across agents: a child of a migrant belongs to the migrant's lineage.
  A draft has depth 0 and is its own lineage root.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from populations.records import NodeRecord

Layers = tuple[str, ...]


def layers_of(record: NodeRecord) -> Layers:
    return tuple(record.proposal_key.split())


def usable(records: Iterable[NodeRecord]) -> list[NodeRecord]:
    """Records with an arrangement of the most common length (ties: the longer), by id."""
    ordered = sorted((r for r in records if r.proposal_key.strip()), key=lambda r: r.node_id)
    lengths = Counter(len(layers_of(r)) for r in ordered)
    if not lengths:
        return []
    modal = max(lengths, key=lambda n: (lengths[n], n))
    return [r for r in ordered if len(layers_of(r)) == modal]


def layer_frequencies(records: Iterable[NodeRecord]) -> list[dict[str, float]]:
    """Per layer position, the fraction of usable records with each primitive there (sorted)."""
    arrangements = [layers_of(r) for r in usable(records)]
    if not arrangements:
        return []
    n = len(arrangements)
    out = []
    for position in range(len(arrangements[0])):
        counts = Counter(a[position] for a in arrangements)
        out.append({p: counts[p] / n for p in sorted(counts)})
    return out


def entropy_bits(counts: Iterable[float]) -> float:
    """Shannon entropy in bits of a distribution given by (unnormalised) counts."""
    values = [c for c in counts if c > 0]
    total = sum(values)
    return -sum(c / total * math.log2(c / total) for c in values) if total else 0.0


def effective_number(counts: Iterable[float]) -> float:
    """Hill number of order 1: ``2 ** entropy_bits`` (0.0 for an empty distribution)."""
    values = [c for c in counts if c > 0]
    return 2.0 ** entropy_bits(values) if values else 0.0


def layer_entropy(records: Iterable[NodeRecord]) -> list[float]:
    """Per layer position, the entropy in bits of the primitive there."""
    return [entropy_bits(f.values()) for f in layer_frequencies(records)]


def mean_layer_entropy(records: Iterable[NodeRecord], *, n_primitives: int | None = None) -> float:
    """Mean per-layer entropy divided by ``log2(n_primitives)``: 0 = every layer fixed,
    1 = every layer uniform. `n_primitives` defaults to the primitives seen; < 2 gives 0."""
    frequencies = layer_frequencies(records)
    seen = {p for f in frequencies for p in f}
    k = len(seen) if n_primitives is None else n_primitives
    if not frequencies or k < 2:
        return 0.0
    return sum(entropy_bits(f.values()) for f in frequencies) / len(frequencies) / math.log2(k)


def unique_arrangements(records: Iterable[NodeRecord]) -> list[Layers]:
    """Distinct usable arrangements in order of first appearance (node id)."""
    return list(dict.fromkeys(layers_of(r) for r in usable(records)))


def unique_count(records: Iterable[NodeRecord]) -> int:
    return len(unique_arrangements(records))


def duplicate_rate(records: Iterable[NodeRecord]) -> float:
    """Fraction of usable records that repeat an arrangement seen before (0 when none)."""
    items = usable(records)
    if not items:
        return 0.0
    return 1.0 - len({layers_of(r) for r in items}) / len(items)


def hamming(a: Layers, b: Layers) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


def pairwise_hamming(records: Iterable[NodeRecord], *, unique: bool = True) -> list[int]:
    """Hamming distances of all pairs (i < j) of usable arrangements, distinct ones if
    `unique`; O(n²), so callers cap n (the report samples the top arrangements)."""
    items = unique_arrangements(records) if unique else [layers_of(r) for r in usable(records)]
    return [hamming(a, b) for i, a in enumerate(items) for b in items[i + 1 :]]


def histogram(values: Iterable[int]) -> dict[int, int]:
    """Counts of each value, ascending."""
    counts = Counter(values)
    return {v: counts[v] for v in sorted(counts)}


def _parents(context: Iterable[NodeRecord]) -> dict[int, int | None]:
    return {r.node_id: r.parent_id for r in context}


def lineage_roots(
    records: Iterable[NodeRecord], context: Iterable[NodeRecord] | None = None
) -> dict[int, int]:
    """Each record's lineage root: its farthest ancestor found in `context`."""
    items = list(records)
    parents = _parents(items if context is None else context)
    roots: dict[int, int] = {}
    for record in items:
        node_id, seen = record.node_id, {record.node_id}
        parent = record.parent_id
        while parent is not None and parent in parents and parent not in seen:
            node_id = parent
            seen.add(parent)
            parent = parents[parent]
        roots[record.node_id] = node_id
    return roots


def lineage_depths(
    records: Iterable[NodeRecord], context: Iterable[NodeRecord] | None = None
) -> dict[int, int]:
    """Each record's number of ancestors found in `context` (a draft: 0)."""
    items = list(records)
    parents = _parents(items if context is None else context)
    depths: dict[int, int] = {}
    for record in items:
        depth, seen, parent = 0, {record.node_id}, record.parent_id
        while parent is not None and parent in parents and parent not in seen:
            depth += 1
            seen.add(parent)
            parent = parents[parent]
        depths[record.node_id] = depth
    return depths


def effective_lineages(
    records: Iterable[NodeRecord], context: Iterable[NodeRecord] | None = None
) -> float:
    """Effective number of lineages: the Hill number of the records' lineage roots."""
    return effective_number(Counter(lineage_roots(records, context).values()).values())


def effective_ancestors(records: Iterable[NodeRecord]) -> float:
    """Effective number of parents of the records that have one (children of a single parent:
    1.0; of 4 parents equally: 4.0): how many nodes the population is really bred from."""
    return effective_number(Counter(r.parent_id for r in records if r.parent_id).values())


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """Arrangements within `radius` Hamming distance of a leader arrangement."""

    leader: Layers
    members: tuple[Layers, ...]


def clusters(records: Iterable[NodeRecord], *, radius: int) -> list[Cluster]:
    """Leader clustering of the distinct arrangements, in order of first appearance: each joins
    the first cluster whose leader is within `radius`, or leads a new one."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    groups: list[tuple[Layers, list[Layers]]] = []
    for layers in unique_arrangements(records):
        for leader, members in groups:
            if hamming(leader, layers) <= radius:
                members.append(layers)
                break
        else:
            groups.append((layers, [layers]))
    return [Cluster(leader=leader, members=tuple(members)) for leader, members in groups]


def primitive_ratios(record: NodeRecord) -> dict[str, float]:
    """Fraction of the record's layers that are each primitive (sorted)."""
    counts = Counter(layers_of(record))
    total = sum(counts.values())
    return {p: counts[p] / total for p in sorted(counts)} if total else {}


def ratio_fitness_correlation(records: Iterable[NodeRecord]) -> dict[str, float | None]:
    """Pearson correlation, over good usable records, between each primitive's fraction of the
    layers and validation fitness (None where either side is constant or n < 2)."""
    good = [r for r in usable(records) if r.is_good and r.val_fitness is not None]
    primitives = sorted({p for r in good for p in layers_of(r)})
    fitness = [r.val_fitness or 0.0 for r in good]
    out: dict[str, float | None] = {}
    for p in primitives:
        ratios = [primitive_ratios(r).get(p, 0.0) for r in good]
        out[p] = pearson(ratios, fitness)
    return out


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = len(xs)
    if n < 2 or n != len(ys):
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiversitySummary:
    """The headline numbers of one group of records (a run, an agent, an island)."""

    n_nodes: int
    n_unique: int
    duplicate_rate: float
    mean_hamming: float | None
    layer_entropy: float
    effective_lineages: float
    effective_ancestors: float
    max_depth: int
    mean_depth: float
    n_clusters: int
    best: float | None


def summarize(
    records: Iterable[NodeRecord],
    *,
    context: Iterable[NodeRecord] | None = None,
    maximize: bool = True,
    radius: int = 2,
    max_pairs_of: int = 400,
) -> DiversitySummary:
    """`DiversitySummary` of `records` (lineages followed through `context`).

    The mean Hamming distance is over the first `max_pairs_of` distinct arrangements, so the cost
    stays bounded on big archives.
    """
    items = sorted(records, key=lambda r: r.node_id)
    ctx = items if context is None else list(context)
    distinct = unique_arrangements(items)[:max_pairs_of]
    distances = [hamming(a, b) for i, a in enumerate(distinct) for b in distinct[i + 1 :]]
    depths = list(lineage_depths(items, ctx).values())
    fitness = [r.val_fitness for r in items if r.is_good and r.val_fitness is not None]
    return DiversitySummary(
        n_nodes=len(items),
        n_unique=unique_count(items),
        duplicate_rate=duplicate_rate(items),
        mean_hamming=sum(distances) / len(distances) if distances else None,
        layer_entropy=mean_layer_entropy(items),
        effective_lineages=effective_lineages(items, ctx),
        effective_ancestors=effective_ancestors(items),
        max_depth=max(depths, default=0),
        mean_depth=sum(depths) / len(depths) if depths else 0.0,
        n_clusters=len(clusters(items, radius=radius)),
        best=(max(fitness) if maximize else min(fitness)) if fitness else None,
    )


def summarize_by(
    records: Iterable[NodeRecord],
    group_of: Callable[[NodeRecord], str | None],
    *,
    maximize: bool = True,
    radius: int = 2,
) -> dict[str, DiversitySummary]:
    """`summarize` per group (records whose group is None are left out), groups sorted;
    lineages are followed through all of `records`."""
    items = list(records)
    groups: dict[str, list[NodeRecord]] = {}
    for record in items:
        name = group_of(record)
        if name is not None:
            groups.setdefault(name, []).append(record)
    return {
        name: summarize(groups[name], context=items, maximize=maximize, radius=radius)
        for name in sorted(groups)
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildEffect:
    """How the children of one kind of parent fared."""

    n_children: int
    n_good: int
    mean_fitness: float | None
    n_better_than_parent: int

    @property
    def improve_rate(self) -> float | None:
        return self.n_better_than_parent / self.n_children if self.n_children else None


def migration_effect(
    records: Iterable[NodeRecord], *, maximize: bool = True
) -> tuple[ChildEffect, ChildEffect]:
    """(children of migrants, other children): a child of a migrant is a node whose parent is
    another agent's node; other children have a parent of their own agent. Drafts count in
    neither. "Better than parent" compares validation fitness (a buggy child never is)."""
    items = list(records)
    by_id: Mapping[int, NodeRecord] = {r.node_id: r for r in items}
    kinds: tuple[list[NodeRecord], list[NodeRecord]] = ([], [])
    for record in items:
        parent = by_id.get(record.parent_id) if record.parent_id is not None else None
        if parent is not None:
            kinds[0 if parent.agent_id != record.agent_id else 1].append(record)
    return _effect(kinds[0], by_id, maximize), _effect(kinds[1], by_id, maximize)


def _effect(
    children: list[NodeRecord], by_id: Mapping[int, NodeRecord], maximize: bool
) -> ChildEffect:
    fitness = [c.val_fitness for c in children if c.is_good and c.val_fitness is not None]
    better = 0
    for child in children:
        assert child.parent_id is not None
        parent = by_id[child.parent_id]
        if child.is_good and parent.is_good:
            assert child.val_fitness is not None and parent.val_fitness is not None
            diff = child.val_fitness - parent.val_fitness
            better += (diff > 0) if maximize else (diff < 0)
    return ChildEffect(
        n_children=len(children),
        n_good=len(fitness),
        mean_fitness=sum(fitness) / len(fitness) if fitness else None,
        n_better_than_parent=better,
    )
