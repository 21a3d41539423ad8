"""One agent's search tree: its `NodeRecord`s under a virtual root.

The tree is a plain in-memory view that the daemon rebuilds from the archive (on resume) and keeps
current with `add` and `update`. It is not thread-safe; one agent coroutine owns it.

Records and children live in dicts, and every selection the policies ask for on each step (good
nodes, buggy leaves, unfinished nodes, drafts, proposal keys, fitness extremes, per-subtree
fitness totals) is an index kept current by `add` and `update`, so a step costs about the depth
of the tree rather than its size. `graph` builds a read-only networkx view on demand, for
analysis only.

**Imported nodes (migrants).** Islands send an island's best nodes to its neighbours as
references (`populations.islands`). `SearchTree.import_migrant` hangs such a foreign, finished
record under the root, stored as a re-parented view of it (``parent_id=None``,
``operator=Operator.MIGRATE``; the archive keeps the original). An imported node is visible to
every selection (`best_node`, `good_nodes`, `fitness_bounds`, subtree totals), so greedy may
Improve it and MCTS may select it, and the agent's own nodes may be its children; it is never a
draft, is not counted by `n_own` (the agent's step limit), and never changes (`update` refuses it).
"""

from __future__ import annotations

from bisect import insort
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx

from populations.exactsum import to_units
from populations.records import ROOT_ID, NodeRecord, NodeStatus, Operator
from populations.sorted_ids import SortedIds

_RECORD = "record"


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryEntry:
    """A summary of one earlier node, as operator prompts show it (FACTS §2, memory)."""

    node_id: int
    parent_id: int | None
    operator: Operator
    plan: str
    proposal: str
    metric: float | None
    buggy: bool
    error: str | None


class SearchTree:
    """The nodes of one agent, as a tree rooted at the virtual root `ROOT_ID`.

    Drafts (``parent_id=None``) hang under `ROOT_ID`. Every other record's parent must be in the
    tree. Queries return records (or ids) in ascending node-id order, so results never depend on
    the order in which records were added.

    Args:
        records: the agent's nodes in any order; all must share one `agent_id`.
        imported: foreign finished records to import as migrants (see `import_migrant`); the
            agent's own records may have them as parents.

    Raises:
        ValueError: on duplicate node ids, a missing parent, a cycle, a record using `ROOT_ID`,
            records of different agents, or an import that `import_migrant` would refuse.
    """

    def __init__(
        self, records: Iterable[NodeRecord] = (), *, imported: Iterable[NodeRecord] = ()
    ) -> None:
        self._agent_id: int | None = None
        self._records: dict[int, NodeRecord] = {}
        self._children: dict[int, list[int]] = {ROOT_ID: []}  # ascending ids
        self._ids = SortedIds()
        self._good = SortedIds()
        self._buggy = SortedIds()
        self._leaves = SortedIds()
        self._buggy_leaves = SortedIds()
        self._unfinished = SortedIds()
        self._drafts = SortedIds()
        self._imported = SortedIds()
        self._keys: Counter[str] = Counter()
        self._keys_frozen: frozenset[str] | None = frozenset()
        # Per node (ROOT_ID included): good nodes in its subtree and the exact sum of their
        # fitness in `exactsum` units. Good nodes whose fitness has no exact form are counted in
        # `_n_inexact` instead, and then `good_subtree_totals` answers None.
        self._sub_good: dict[int, int] = {ROOT_ID: 0}
        self._sub_units: dict[int, int] = {ROOT_ID: 0}
        self._n_inexact = 0
        # Ids of the good nodes of least and greatest fitness, the earliest on ties; valid only
        # while `_extremes_valid` and no good fitness is NaN (`_n_nan`), else recomputed.
        self._lo_id: int | None = None
        self._hi_id: int | None = None
        self._extremes_valid = True
        self._n_nan = 0
        self._graph: nx.DiGraph[int] | None = None

        pending = sorted(records, key=lambda r: r.node_id)
        by_id: dict[int, NodeRecord] = {}
        for record in pending:
            self._check_new(record)
            if record.node_id in by_id:
                raise ValueError(f"duplicate node id {record.node_id}")
            by_id[record.node_id] = record
        migrants = sorted((self._as_migrant(r) for r in imported), key=lambda r: r.node_id)
        for record in migrants:
            if record.node_id in by_id:
                raise ValueError(f"duplicate node id {record.node_id}")
            by_id[record.node_id] = record
            self._imported.add(record.node_id)
        pending = sorted([*pending, *migrants], key=lambda r: r.node_id)
        below: dict[int, list[int]] = {ROOT_ID: []}
        for record in pending:
            if record.parent_id is not None and record.parent_id not in by_id:
                raise ValueError(f"node {record.node_id} has unknown parent {record.parent_id}")
            below.setdefault(_parent_key(record), []).append(record.node_id)
        # Insert parents before children; nodes on a parent cycle are never reached from the root.
        order: list[int] = []
        frontier = [ROOT_ID]
        while frontier:
            node_id = frontier.pop()
            kids = below.get(node_id, [])
            order.extend(kids)
            frontier.extend(kids)
        if len(order) != len(pending):
            raise ValueError("records contain a parent cycle")
        for node_id in order:
            self._insert(by_id[node_id])

    # -- mutation -------------------------------------------------------------------------------

    def add(self, record: NodeRecord) -> None:
        """Add a new node under its parent.

        Raises:
            ValueError: if the id exists, the parent is missing, or the agent differs.
        """
        self._check_new(record)
        if record.node_id in self._records:
            raise ValueError(f"node {record.node_id} is already in the tree")
        if _parent_key(record) not in self._children:
            raise ValueError(f"node {record.node_id} has unknown parent {record.parent_id}")
        self._insert(record)

    def import_migrant(self, record: NodeRecord) -> NodeRecord:
        """Import a foreign node (a migrant from another island) under the root.

        The tree stores ``replace(record, parent_id=None, operator=Operator.MIGRATE)``: the
        node's own lineage lives in another agent's tree, and here it is a new starting point.

        Returns:
            The record as this tree holds it.

        Raises:
            ValueError: if the id is `ROOT_ID` or already in the tree, the record is not
                finished (a step never sees unfinished nodes), or it is this agent's own node.
        """
        migrant = self._as_migrant(record)
        if migrant.node_id in self._records:
            raise ValueError(f"node {migrant.node_id} is already in the tree")
        self._imported.add(migrant.node_id)
        self._insert(migrant)
        return migrant

    def _as_migrant(self, record: NodeRecord) -> NodeRecord:
        if record.node_id == ROOT_ID:
            raise ValueError(f"node id {ROOT_ID} is reserved for the virtual root")
        if not record.status.finished:
            raise ValueError(f"migrant {record.node_id} is not finished ({record.status.value})")
        if self._agent_id is not None and record.agent_id == self._agent_id:
            raise ValueError(f"node {record.node_id} is this agent's own; it cannot be imported")
        if record.parent_id is None and record.operator is Operator.MIGRATE:
            return record
        return replace(record, parent_id=None, operator=Operator.MIGRATE)

    def update(self, record: NodeRecord) -> None:
        """Replace the record of an existing node (e.g. when its evaluation finished).

        Raises:
            KeyError: if the node is not in the tree.
            ValueError: if the new record changes the node's parent or agent, or the node is
                imported (migrants never change).
        """
        old = self[record.node_id]
        if record.node_id in self._imported:
            raise ValueError(f"node {record.node_id} is an imported migrant and cannot change")
        if record.parent_id != old.parent_id or record.agent_id != old.agent_id:
            raise ValueError(f"update of node {record.node_id} may not change parent or agent")
        self._records[record.node_id] = record
        self._graph = None
        self._unindex(old)
        self._index(record)

    def _check_new(self, record: NodeRecord) -> None:
        if record.node_id == ROOT_ID:
            raise ValueError(f"node id {ROOT_ID} is reserved for the virtual root")
        if self._agent_id is None:
            records = self._records
            if any(i in records and records[i].agent_id == record.agent_id
                   for i in self._imported):  # fmt: skip
                raise ValueError(f"node {record.node_id} is of the agent of an imported node")
            self._agent_id = record.agent_id
        elif record.agent_id != self._agent_id:
            raise ValueError(
                f"node {record.node_id} belongs to agent {record.agent_id}, "
                f"the tree to agent {self._agent_id}"
            )

    def _insert(self, record: NodeRecord) -> None:
        """Link a checked new record under its (present) parent and index it."""
        node_id, parent = record.node_id, _parent_key(record)
        self._records[node_id] = record
        self._children[node_id] = []
        self._sub_good[node_id] = 0
        self._sub_units[node_id] = 0
        siblings = self._children[parent]
        if not siblings or node_id > siblings[-1]:
            siblings.append(node_id)
        else:
            insort(siblings, node_id)
        self._ids.add(node_id)
        self._leaves.add(node_id)
        if parent != ROOT_ID:
            self._leaves.discard(parent)
            self._buggy_leaves.discard(parent)
        self._graph = None
        self._index(record)

    def _index(self, record: NodeRecord) -> None:
        """Enter `record` (already stored) into the selection indexes."""
        node_id = record.node_id
        if record.is_buggy:
            self._buggy.add(node_id)
            if node_id in self._leaves:
                self._buggy_leaves.add(node_id)
        if not record.status.finished:
            self._unfinished.add(node_id)
        if record.operator is Operator.DRAFT and node_id not in self._imported:
            self._drafts.add(node_id)
        if record.proposal_key:
            self._keys[record.proposal_key] += 1
            if self._keys_frozen is not None and record.proposal_key not in self._keys_frozen:
                self._keys_frozen = None
        if record.is_good:
            assert record.val_fitness is not None
            self._good.add(node_id)
            self._add_good_total(record, 1)
            self._enter_extremes(node_id, record.val_fitness)

    def _unindex(self, record: NodeRecord) -> None:
        """Remove `record` (no longer stored) from the selection indexes."""
        node_id = record.node_id
        self._buggy.discard(node_id)
        self._buggy_leaves.discard(node_id)
        self._unfinished.discard(node_id)
        self._drafts.discard(node_id)
        if record.proposal_key:
            self._keys[record.proposal_key] -= 1
            if not self._keys[record.proposal_key]:
                del self._keys[record.proposal_key]
                self._keys_frozen = None
        if record.is_good:
            assert record.val_fitness is not None
            self._good.discard(node_id)
            self._add_good_total(record, -1)
            if record.val_fitness != record.val_fitness:
                self._n_nan -= 1
            if node_id in (self._lo_id, self._hi_id):
                self._extremes_valid = False

    def _add_good_total(self, record: NodeRecord, sign: int) -> None:
        assert record.val_fitness is not None
        units = to_units(record.val_fitness)
        if units is None:
            self._n_inexact += sign
            return
        units *= sign
        node_id: int | None = record.node_id
        while node_id is not None:
            self._sub_good[node_id] += sign
            self._sub_units[node_id] += units
            if node_id == ROOT_ID:
                break
            parent_id = self._records[node_id].parent_id
            node_id = ROOT_ID if parent_id is None else parent_id

    def _enter_extremes(self, node_id: int, fitness: float) -> None:
        if fitness != fitness:  # NaN: min/max depend on position, so recompute from scratch
            self._n_nan += 1
            return
        if not self._extremes_valid:
            return
        lo_id, hi_id = self._lo_id, self._hi_id
        if lo_id is None or hi_id is None:
            self._lo_id = self._hi_id = node_id
            return
        lo = self._fitness(lo_id)
        if fitness < lo or (fitness == lo and node_id < lo_id):
            self._lo_id = node_id
        hi = self._fitness(hi_id)
        if fitness > hi or (fitness == hi and node_id < hi_id):
            self._hi_id = node_id

    def _fitness(self, node_id: int) -> float:
        fitness = self._records[node_id].val_fitness
        assert fitness is not None
        return fitness

    def _extremes(self) -> tuple[int, int] | None:
        """Ids of the (first) least and greatest good fitness, scanning good ids ascending."""
        if self._n_nan or not self._extremes_valid:
            lo_id = hi_id = None
            for node_id in self._good:
                fitness = self._fitness(node_id)
                if lo_id is None or hi_id is None:
                    lo_id = hi_id = node_id
                    continue
                if fitness < self._fitness(lo_id):
                    lo_id = node_id
                if fitness > self._fitness(hi_id):
                    hi_id = node_id
            if self._n_nan:
                return None if lo_id is None or hi_id is None else (lo_id, hi_id)
            self._lo_id, self._hi_id, self._extremes_valid = lo_id, hi_id, True
        if self._lo_id is None or self._hi_id is None:
            return None
        return self._lo_id, self._hi_id

    # -- lookup ---------------------------------------------------------------------------------

    @property
    def agent_id(self) -> int | None:
        """The agent whose nodes these are; None while the tree is empty."""
        return self._agent_id

    @property
    def graph(self) -> nx.DiGraph[int]:
        """A read-only view of the graph; node attribute ``"record"`` (None for the root).

        Built on first use after a change (O(n)); the search itself never needs it.
        """
        if self._graph is None:
            graph: nx.DiGraph[int] = nx.DiGraph()
            graph.add_node(ROOT_ID, **{_RECORD: None})
            for node_id in self._ids:
                graph.add_node(node_id, **{_RECORD: self._records[node_id]})
            for node_id in self._ids:
                graph.add_edge(_parent_key(self._records[node_id]), node_id)
            self._graph = graph
        view: nx.DiGraph[int] = self._graph.copy(as_view=True)
        return view

    def __len__(self) -> int:
        """Number of real nodes (the virtual root is not counted)."""
        return len(self._records)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._records

    def __getitem__(self, node_id: int) -> NodeRecord:
        try:
            return self._records[node_id]
        except KeyError:
            raise KeyError(f"node {node_id} is not in the tree") from None

    def __iter__(self) -> Iterator[NodeRecord]:
        """Records in ascending node-id order."""
        return iter(self.records())

    def records(self) -> list[NodeRecord]:
        records = self._records
        return [records[i] for i in self._ids]

    def node_ids(self) -> list[int]:
        return list(self._ids)

    def _node(self, node_id: int) -> int:
        if node_id != ROOT_ID and node_id not in self._records:
            raise KeyError(f"node {node_id} is not in the tree")
        return node_id

    def _select(self, ids: Iterable[int]) -> list[NodeRecord]:
        records = self._records
        return [records[i] for i in ids]

    def children(self, node_id: int) -> list[NodeRecord]:
        """Children of `node_id` (`ROOT_ID` for the drafts), ascending by id."""
        return self._select(self._children[self._node(node_id)])

    def parent(self, node_id: int) -> NodeRecord | None:
        """The parent record, or None when the parent is the virtual root."""
        parent_id = self[node_id].parent_id
        return None if parent_id is None else self[parent_id]

    def is_leaf(self, node_id: int) -> bool:
        return not self._children[self._node(node_id)]

    def leaves(self) -> list[NodeRecord]:
        """Nodes without children (the root is never a leaf here)."""
        return self._select(self._leaves)

    def path_to_root(self, node_id: int) -> list[int]:
        """Ids from `node_id` up to `ROOT_ID` inclusive: ``[node_id, parent, ..., ROOT_ID]``."""
        path = [self._node(node_id)]
        records = self._records
        while path[-1] != ROOT_ID:
            parent_id = records[path[-1]].parent_id
            path.append(ROOT_ID if parent_id is None else parent_id)
        return path

    def descendants(self, node_id: int) -> list[int]:
        """Ids of all nodes below `node_id` (not including it), ascending."""
        children = self._children
        found: list[int] = []
        frontier = list(children[self._node(node_id)])
        while frontier:
            child = frontier.pop()
            found.append(child)
            frontier.extend(children[child])
        found.sort()
        return found

    def postorder(self) -> list[int]:
        """All ids, `ROOT_ID` last, each node after all of its descendants (children by id)."""
        order: list[int] = []
        stack: list[tuple[int, bool]] = [(ROOT_ID, False)]
        while stack:
            node_id, expanded = stack.pop()
            if expanded:
                order.append(node_id)
                continue
            stack.append((node_id, True))
            stack.extend((c, False) for c in reversed(self._children[node_id]))
        return order

    def good_subtree_totals(self, node_id: int) -> tuple[int, int] | None:
        """The good nodes in the subtree of `node_id` (itself included; `ROOT_ID`: all): their
        number and the exact sum of their fitness in `populations.exactsum` units.

        Kept current by `add` and `update`, so this is O(1). ``exactsum.from_units`` of the sum
        equals `math.fsum` of those fitness values.

        Returns:
            None when some good node of the tree has a fitness with no exact form (see
            `exactsum.to_units`); callers then sum the values themselves.
        """
        self._node(node_id)
        if self._n_inexact:
            return None
        return self._sub_good[node_id], self._sub_units[node_id]

    def debug_depth(self, node_id: int) -> int:
        """Length of the chain of consecutive Debug operators ending at `node_id`.

        A Draft or Improve node has depth 0; a Debug child of it depth 1, and so on (AIDE rule).
        """
        depth, record = 0, self[node_id]
        while record.operator is Operator.DEBUG:
            depth += 1
            if record.parent_id is None:
                break
            record = self[record.parent_id]
        return depth

    def debug_chain(self, node_id: int) -> list[NodeRecord]:
        """`node_id` and its consecutive Debug ancestors down to the node they repair, root first.

        This is what a Debug prompt shows: the original buggy node and each failed repair.
        """
        chain = [self[node_id]]
        while chain[-1].operator is Operator.DEBUG and chain[-1].parent_id is not None:
            chain.append(self[chain[-1].parent_id])
        return chain[::-1]

    def complexity_hint(self, node_id: int) -> str:
        """FACTS §2 complexity hint by number of children: <2 simple, <4 normal, else complex."""
        n = len(self.children(node_id))
        return "simple" if n < 2 else "normal" if n < 4 else "complex"

    # -- selections -----------------------------------------------------------------------------

    def good_nodes(self) -> list[NodeRecord]:
        return self._select(self._good)

    def buggy_nodes(self) -> list[NodeRecord]:
        return self._select(self._buggy)

    def buggy_leaves(self) -> list[NodeRecord]:
        return self._select(self._buggy_leaves)

    def unfinished(self) -> list[NodeRecord]:
        """Nodes still PENDING or RUNNING."""
        return self._select(self._unfinished)

    def drafts(self) -> list[NodeRecord]:
        """Nodes made by the Draft operator."""
        return self._select(self._drafts)

    @property
    def n_drafts(self) -> int:
        return len(self._drafts)

    def imported(self) -> list[NodeRecord]:
        """Imported migrants (see `import_migrant`), ascending by id."""
        return self._select(self._imported)

    def is_imported(self, node_id: int) -> bool:
        return node_id in self._imported

    @property
    def n_own(self) -> int:
        """Number of the agent's own nodes (imported migrants are not counted)."""
        return len(self._records) - len(self._imported)

    def proposal_keys(self) -> frozenset[str]:
        """Canonical proposals already in the tree (for deduplication)."""
        if self._keys_frozen is None:
            self._keys_frozen = frozenset(self._keys)
        return self._keys_frozen

    def has_proposal_key(self, key: str) -> bool:
        """``key in self.proposal_keys()``, in O(1) without building the set."""
        return bool(key) and key in self._keys

    def fitness_bounds(self) -> tuple[float, float] | None:
        """``(min, max)`` of the validation fitness of the good nodes, taken in ascending id order
        (as `min`/`max` of that list would); None when there is no good node. O(1) amortised."""
        extremes = self._extremes()
        if extremes is None:
            return None
        return self._fitness(extremes[0]), self._fitness(extremes[1])

    def best_node(self, *, maximize: bool = True) -> NodeRecord | None:
        """The good node with the best validation fitness; the earliest one on ties."""
        extremes = self._extremes()
        if extremes is None:
            return None
        return self._records[extremes[1] if maximize else extremes[0]]

    def memory(self, *, include_buggy: bool = True, limit: int | None = None) -> list[MemoryEntry]:
        """Summaries of finished nodes for operator prompts, oldest first.

        Args:
            include_buggy: include buggy nodes (FACTS §2: optional).
            limit: keep only the most recent `limit` entries.
        """
        entries = [
            MemoryEntry(
                node_id=r.node_id,
                parent_id=r.parent_id,
                operator=r.operator,
                plan=r.plan,
                proposal=r.proposal,
                metric=r.val_fitness if r.is_good else None,
                buggy=r.is_buggy,
                error=r.error,
            )
            for r in self
            if r.status.finished and (include_buggy or not r.is_buggy)
        ]
        return entries if limit is None else entries[-limit:] if limit > 0 else []

    # -- comparison -----------------------------------------------------------------------------

    def copy(self) -> SearchTree:
        own = [r for r in self.records() if r.node_id not in self._imported]
        return SearchTree(own, imported=self.imported())

    def signature(self) -> tuple[tuple[Any, ...], ...]:
        """A hashable structural summary: per node (id, parent, operator, proposal, status,
        fitness, error), ascending by id. Equal signatures mean equal trees for search purposes."""
        return tuple(
            (
                r.node_id,
                r.parent_id,
                r.operator.value,
                r.proposal_key,
                r.status.value,
                r.val_fitness,
                r.error,
            )
            for r in self
        )

    def to_dicts(self) -> list[dict[str, Any]]:
        """The signature as JSON-friendly dicts (for golden files and debugging)."""
        keys = (
            "node_id",
            "parent_id",
            "operator",
            "proposal_key",
            "status",
            "val_fitness",
            "error",
        )
        return [dict(zip(keys, row, strict=True)) for row in self.signature()]

    def __eq__(self, other: object) -> bool:
        """Trees are equal when they hold equal records (which fixes the edges too)."""
        if not isinstance(other, SearchTree):
            return NotImplemented
        return self.records() == other.records()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        counts = {s.value: sum(r.status is s for r in self) for s in NodeStatus}
        return f"SearchTree(agent_id={self._agent_id}, n_nodes={len(self)}, {counts})"


def _parent_key(record: NodeRecord) -> int:
    return ROOT_ID if record.parent_id is None else record.parent_id
