"""One agent's search tree: its `NodeRecord`s under a virtual root, held in a networkx DiGraph.

The tree is a plain in-memory view that the daemon rebuilds from the archive (on resume) and keeps
current with `add` and `update`. It is not thread-safe; one agent coroutine owns it. It never hands
out its graph for writing: `graph` is a read-only view.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import networkx as nx

from populations.records import ROOT_ID, NodeRecord, NodeStatus, Operator

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

    Raises:
        ValueError: on duplicate node ids, a missing parent, a cycle, a record using `ROOT_ID`,
            or records of different agents.
    """

    def __init__(self, records: Iterable[NodeRecord] = ()) -> None:
        self._graph: nx.DiGraph[int] = nx.DiGraph()
        self._graph.add_node(ROOT_ID, **{_RECORD: None})
        self._agent_id: int | None = None
        pending = sorted(records, key=lambda r: r.node_id)
        by_id: dict[int, NodeRecord] = {}
        for record in pending:
            self._check_new(record)
            if record.node_id in by_id:
                raise ValueError(f"duplicate node id {record.node_id}")
            by_id[record.node_id] = record
        for record in pending:
            if record.parent_id is not None and record.parent_id not in by_id:
                raise ValueError(f"node {record.node_id} has unknown parent {record.parent_id}")
            self._graph.add_node(record.node_id, **{_RECORD: record})
        for record in pending:
            self._graph.add_edge(_parent_key(record), record.node_id)
        if len(nx.descendants(self._graph, ROOT_ID)) != len(pending):
            raise ValueError("records contain a parent cycle")

    # -- mutation -------------------------------------------------------------------------------

    def add(self, record: NodeRecord) -> None:
        """Add a new node under its parent.

        Raises:
            ValueError: if the id exists, the parent is missing, or the agent differs.
        """
        self._check_new(record)
        if record.node_id in self._graph:
            raise ValueError(f"node {record.node_id} is already in the tree")
        parent = _parent_key(record)
        if parent not in self._graph:
            raise ValueError(f"node {record.node_id} has unknown parent {record.parent_id}")
        self._graph.add_node(record.node_id, **{_RECORD: record})
        self._graph.add_edge(parent, record.node_id)

    def update(self, record: NodeRecord) -> None:
        """Replace the record of an existing node (e.g. when its evaluation finished).

        Raises:
            KeyError: if the node is not in the tree.
            ValueError: if the new record changes the node's parent or agent.
        """
        old = self[record.node_id]
        if record.parent_id != old.parent_id or record.agent_id != old.agent_id:
            raise ValueError(f"update of node {record.node_id} may not change parent or agent")
        self._graph.nodes[record.node_id][_RECORD] = record

    def _check_new(self, record: NodeRecord) -> None:
        if record.node_id == ROOT_ID:
            raise ValueError(f"node id {ROOT_ID} is reserved for the virtual root")
        if self._agent_id is None:
            self._agent_id = record.agent_id
        elif record.agent_id != self._agent_id:
            raise ValueError(
                f"node {record.node_id} belongs to agent {record.agent_id}, "
                f"the tree to agent {self._agent_id}"
            )

    # -- lookup ---------------------------------------------------------------------------------

    @property
    def agent_id(self) -> int | None:
        """The agent whose nodes these are; None while the tree is empty."""
        return self._agent_id

    @property
    def graph(self) -> nx.DiGraph[int]:
        """A read-only view of the graph; node attribute ``"record"`` (None for the root)."""
        view: nx.DiGraph[int] = self._graph.copy(as_view=True)
        return view

    def __len__(self) -> int:
        """Number of real nodes (the virtual root is not counted)."""
        n: int = self._graph.number_of_nodes()
        return n - 1

    def __contains__(self, node_id: object) -> bool:
        return node_id != ROOT_ID and node_id in self._graph

    def __getitem__(self, node_id: int) -> NodeRecord:
        if node_id not in self:
            raise KeyError(f"node {node_id} is not in the tree")
        record: NodeRecord = self._graph.nodes[node_id][_RECORD]
        return record

    def __iter__(self) -> Iterator[NodeRecord]:
        """Records in ascending node-id order."""
        return iter(self.records())

    def records(self) -> list[NodeRecord]:
        return [self[i] for i in self.node_ids()]

    def node_ids(self) -> list[int]:
        return sorted(n for n in self._graph.nodes if n != ROOT_ID)

    def _node(self, node_id: int) -> int:
        if node_id != ROOT_ID and node_id not in self:
            raise KeyError(f"node {node_id} is not in the tree")
        return node_id

    def children(self, node_id: int) -> list[NodeRecord]:
        """Children of `node_id` (`ROOT_ID` for the drafts), ascending by id."""
        return [self[c] for c in sorted(self._graph.successors(self._node(node_id)))]

    def parent(self, node_id: int) -> NodeRecord | None:
        """The parent record, or None when the parent is the virtual root."""
        parent_id = self[node_id].parent_id
        return None if parent_id is None else self[parent_id]

    def is_leaf(self, node_id: int) -> bool:
        degree: int = self._graph.out_degree(self._node(node_id))
        return degree == 0

    def leaves(self) -> list[NodeRecord]:
        """Nodes without children (the root is never a leaf here)."""
        return [r for r in self if self.is_leaf(r.node_id)]

    def path_to_root(self, node_id: int) -> list[int]:
        """Ids from `node_id` up to `ROOT_ID` inclusive: ``[node_id, parent, ..., ROOT_ID]``."""
        path = [self._node(node_id)]
        while path[-1] != ROOT_ID:
            path.append(next(iter(self._graph.predecessors(path[-1]))))
        return path

    def descendants(self, node_id: int) -> list[int]:
        """Ids of all nodes below `node_id` (not including it), ascending."""
        return sorted(nx.descendants(self._graph, self._node(node_id)))

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
            stack.extend((c, False) for c in sorted(self._graph.successors(node_id), reverse=True))
        return order

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
        return [r for r in self if r.is_good]

    def buggy_nodes(self) -> list[NodeRecord]:
        return [r for r in self if r.is_buggy]

    def buggy_leaves(self) -> list[NodeRecord]:
        return [r for r in self.leaves() if r.is_buggy]

    def unfinished(self) -> list[NodeRecord]:
        """Nodes still PENDING or RUNNING."""
        return [r for r in self if not r.status.finished]

    def drafts(self) -> list[NodeRecord]:
        """Nodes made by the Draft operator."""
        return [r for r in self if r.operator is Operator.DRAFT]

    @property
    def n_drafts(self) -> int:
        return len(self.drafts())

    def proposal_keys(self) -> frozenset[str]:
        """Canonical proposals already in the tree (for deduplication)."""
        return frozenset(r.proposal_key for r in self if r.proposal_key)

    def best_node(self, *, maximize: bool = True) -> NodeRecord | None:
        """The good node with the best validation fitness; the earliest one on ties."""
        best: NodeRecord | None = None
        for record in self.good_nodes():
            assert record.val_fitness is not None
            if best is None:
                best = record
                continue
            assert best.val_fitness is not None
            better = (
                record.val_fitness > best.val_fitness
                if maximize
                else record.val_fitness < best.val_fitness
            )
            if better:
                best = record
        return best

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
        return SearchTree(self.records())

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
