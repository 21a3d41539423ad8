"""A set of node ids kept in ascending order: the building block of `SearchTree`'s indexes."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator


class SortedIds:
    """A set of node ids that also keeps them in ascending order (appends are the common case)."""

    __slots__ = ("_members", "_order")

    def __init__(self) -> None:
        self._members: set[int] = set()
        self._order: list[int] = []

    def add(self, node_id: int) -> None:
        if node_id in self._members:
            return
        self._members.add(node_id)
        if not self._order or node_id > self._order[-1]:
            self._order.append(node_id)
        else:
            insort(self._order, node_id)

    def discard(self, node_id: int) -> None:
        if node_id in self._members:
            self._members.remove(node_id)
            del self._order[bisect_left(self._order, node_id)]

    def __contains__(self, node_id: int) -> bool:
        return node_id in self._members

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[int]:
        return iter(self._order)

    def last(self) -> int | None:
        return self._order[-1] if self._order else None
