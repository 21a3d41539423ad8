"""Composer's aggregator: many scored submissions -> one robust arrangement (FACTS §4).

A single best arrangement is partly luck: proxy scores are noisy. Composer pools the top
candidates, clusters them, and chooses each layer's primitive by conditional frequency among the
clustered candidates. This module is that procedure, made precise:

1. **Pool.** Submissions of equal arrangements are merged: their score is the mean of theirs
   (one retrained arrangement scored twice is one candidate, better measured). Submissions whose
   depth differs from the most common depth are dropped (counted in `Aggregate.n_dropped`).
2. **Top.** The ``top`` best distinct arrangements (direction ``maximize``; ties: first seen).
3. **Cluster.** Single-linkage clustering by Hamming distance: two candidates are linked when
   they differ in at most ``radius`` positions (default ``max(1, depth // 4)``, 4 of 16), and the
   clusters are the connected components (networkx). The chosen cluster is the largest — the
   region of the space where good candidates agree — ties broken by the better mean score, then
   by holding the best candidate. Only its members vote below.
4. **Vote, layer by layer**, left to right, in one of three variants; ``N_c`` names how many
   already-decided layers a vote is conditioned on:

   - ``N_0``: no conditioning. Layer i takes the primitive most frequent at position i among the
     cluster's members (a per-position majority, the cluster's consensus string).
   - ``N_1``: conditioned on the previous layer. Layer 1 is as in N_0; layer i > 1 takes the
     primitive most frequent at position i among the members whose layer i-1 equals the
     primitive already chosen for layer i-1 (a first-order Markov chain over the members,
     decoded greedily). Such members always exist: layer i-1's primitive was the most frequent
     among members with at least one holding it.
   - ``N_all``: conditioned on every earlier layer. Layer i takes the primitive most frequent at
     position i among the members that agree with all layers chosen so far (a greedy walk down
     the members' prefix tree into its most populated branch). The result is always one of the
     members: the one on the most supported path.

   Ties in a vote go to the primitive whose voters have the better mean score, then to the
   order of `populations.arrangement.PRIMITIVES`. Every distinct arrangement votes once.

`aggregate` returns the arrangement with one `LayerDecision` per layer: who voted (the
conditioning context and how many members matched it), the counts, and why the winner won.
Pure and deterministic: the same submissions in the same order give the same result (order
matters only to break exact score ties between distinct arrangements: the first seen ranks first).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import networkx as nx

from populations.arrangement import PRIMITIVES, Arrangement, hamming_distance

__all__ = [
    "Aggregate",
    "Candidate",
    "LayerDecision",
    "Submission",
    "Variant",
    "aggregate",
]


class Variant(StrEnum):
    """How many already-decided layers a layer's vote is conditioned on (module docstring)."""

    N_0 = "N_0"
    N_1 = "N_1"
    N_ALL = "N_all"


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """One scored arrangement of one agent (``node_id``/``agent`` only label it)."""

    layers: tuple[str, ...]
    score: float
    node_id: int | None = None
    agent: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A distinct arrangement: its mean score over ``n_submissions`` and the node ids."""

    layers: tuple[str, ...]
    score: float
    n_submissions: int
    node_ids: tuple[int, ...]

    @property
    def key(self) -> str:
        return " ".join(self.layers)


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerDecision:
    """How one layer (1-based ``position``) was decided.

    ``context`` maps the 1-based positions the vote was conditioned on to their chosen
    primitives (empty for N_0 and for layer 1); ``support`` is how many cluster members matched
    it; ``counts`` and ``mean_scores`` are over those members, per primitive that got votes.
    """

    position: int
    chosen: str
    context: dict[int, str]
    support: int
    counts: dict[str, int]
    mean_scores: dict[str, float]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregate:
    """The aggregated arrangement and the record of how it was made."""

    arrangement: Arrangement
    variant: Variant
    maximize: bool
    radius: int
    n_submissions: int
    n_dropped: int
    candidates: tuple[Candidate, ...]
    clusters: tuple[tuple[int, ...], ...]
    cluster: tuple[int, ...]
    decisions: tuple[LayerDecision, ...]

    @property
    def members(self) -> tuple[Candidate, ...]:
        """The candidates of the chosen cluster (the voters)."""
        return tuple(self.candidates[i] for i in self.cluster)


def _pool(
    submissions: Sequence[Submission],
) -> tuple[list[Candidate], int]:
    depths = Counter(len(s.layers) for s in submissions)
    depth = max(depths, key=lambda d: (depths[d], -d))  # most common; ties: the shorter
    kept = [s for s in submissions if len(s.layers) == depth]
    groups: dict[tuple[str, ...], list[Submission]] = {}
    for s in kept:
        groups.setdefault(tuple(s.layers), []).append(s)
    pooled = [
        Candidate(
            layers=layers,
            score=sum(s.score for s in group) / len(group),
            n_submissions=len(group),
            node_ids=tuple(s.node_id for s in group if s.node_id is not None),
        )
        for layers, group in groups.items()
    ]
    return pooled, len(submissions) - len(kept)


def _clusters(candidates: Sequence[Candidate], radius: int) -> list[tuple[int, ...]]:
    graph: nx.Graph[int] = nx.Graph()
    graph.add_nodes_from(range(len(candidates)))
    for i in range(len(candidates)):
        for j in range(i + 1, len(candidates)):
            if hamming_distance(candidates[i].layers, candidates[j].layers) <= radius:
                graph.add_edge(i, j)
    return sorted(tuple(sorted(c)) for c in nx.connected_components(graph))


def _vote(
    members: Sequence[Candidate], position: int, sign: float
) -> tuple[str, dict[str, int], dict[str, float], str]:
    counts: Counter[str] = Counter(c.layers[position] for c in members)
    totals: dict[str, float] = {}
    for c in members:
        totals[c.layers[position]] = totals.get(c.layers[position], 0.0) + c.score
    means = {p: totals[p] / counts[p] for p in counts}
    order = {p: i for i, p in enumerate(PRIMITIVES)}
    ranked = sorted(counts, key=lambda p: (-counts[p], -sign * means[p], order[p]))
    winner = ranked[0]
    tied = [p for p in ranked if counts[p] == counts[winner]]
    if len(tied) == 1:
        reason = f"majority {counts[winner]}/{len(members)}"
    elif means[tied[0]] != means[tied[1]]:
        reason = f"tie {counts[winner]}/{len(members)}, broken by the better mean score"
    else:
        reason = f"tie {counts[winner]}/{len(members)}, broken by primitive order"
    counts_out = {p: counts[p] for p in PRIMITIVES if p in counts}
    means_out = {p: means[p] for p in PRIMITIVES if p in means}
    return winner, counts_out, means_out, reason


def aggregate(
    submissions: Iterable[Submission],
    *,
    top: int,
    variant: Variant | str = Variant.N_1,
    maximize: bool = True,
    radius: int | None = None,
) -> Aggregate:
    """Aggregate scored submissions into one arrangement (the procedure of the module docstring).

    Args:
        submissions: scored arrangements, e.g. every agent's submissions with test scores.
        top: how many of the best distinct arrangements to cluster.
        variant: ``N_0``, ``N_1`` or ``N_all``.
        maximize: whether a higher score is better.
        radius: Hamming linkage radius of the clustering; None means ``max(1, depth // 4)``.

    Raises:
        ValueError: no submissions, ``top`` < 1, a negative radius, or an unknown variant.
    """
    subs = list(submissions)
    if not subs:
        raise ValueError("no submissions to aggregate")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    try:
        chosen_variant = Variant(variant)
    except ValueError:
        known = ", ".join(v.value for v in Variant)
        raise ValueError(f"unknown variant {variant!r}; known: {known}") from None
    sign = 1.0 if maximize else -1.0
    pooled, n_dropped = _pool(subs)
    depth = len(pooled[0].layers)
    link = max(1, depth // 4) if radius is None else radius
    if link < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    ranked = sorted(range(len(pooled)), key=lambda i: (-sign * pooled[i].score, i))
    candidates = tuple(pooled[i] for i in ranked[:top])
    clusters = _clusters(candidates, link)

    def cluster_rank(c: tuple[int, ...]) -> tuple[int, float, int]:
        mean = sum(candidates[i].score for i in c) / len(c)
        return (-len(c), -sign * mean, c[0])  # c[0] == 0: holds the best candidate

    cluster = min(clusters, key=cluster_rank)
    members = [candidates[i] for i in cluster]
    chosen: list[str] = []
    decisions: list[LayerDecision] = []
    for pos in range(depth):
        if chosen_variant is Variant.N_0 or pos == 0:
            context: dict[int, str] = {}
        elif chosen_variant is Variant.N_1:
            context = {pos: chosen[pos - 1]}
        else:
            context = {i + 1: p for i, p in enumerate(chosen)}
        voters = [c for c in members if all(c.layers[i - 1] == p for i, p in context.items())]
        assert voters, "a chosen primitive always has a voter holding it"
        winner, counts, means, reason = _vote(voters, pos, sign)
        chosen.append(winner)
        decisions.append(
            LayerDecision(
                position=pos + 1,
                chosen=winner,
                context=context,
                support=len(voters),
                counts=counts,
                mean_scores=means,
                reason=reason,
            )
        )
    return Aggregate(
        arrangement=Arrangement(layers=tuple(chosen)),
        variant=chosen_variant,
        maximize=maximize,
        radius=link,
        n_submissions=len(subs),
        n_dropped=n_dropped,
        candidates=candidates,
        clusters=tuple(sorted(clusters, key=cluster_rank)),
        cluster=cluster,
        decisions=tuple(decisions),
    )
