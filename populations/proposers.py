"""Classical proposers: stand-ins for LLM agents that answer an `Action` with an arrangement.

They share the interface the LLM agents implement, so the daemon runs them with no API key:
`BaseProposer.propose(action, tree, rng) -> Proposal`. They are pure and synchronous; the rng is
their only source of randomness, so the same (action, tree, rng state) gives the same proposal.

- `RandomProposer`: Draft samples uniformly; Improve applies one point mutation to the parent;
  Debug repairs or re-samples the parent.
- `EvolutionProposer`: regularised evolution's mutation step (Real et al. 2019) without its
  tournament, since the policy chooses the parent: Improve applies a point mutation, a swap of two
  positions, or a segment copy, and its plan names the mutation.

Both avoid arrangements already in the tree: they retry up to `max_tries` times, then accept a
repeat (the daemon's evaluation cache makes a repeat cheap).
"""

from __future__ import annotations

import functools
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from populations.arrangement import (
    PRIMITIVES,
    Arrangement,
    ArrangementError,
    random_arrangement,
)
from populations.records import Action, Operator, Proposal
from populations.tree import SearchTree

if TYPE_CHECKING:
    from populations.bo import BOProposer

MUTATIONS: tuple[str, ...] = ("point", "swap", "segment_copy")
"""Mutation operators of `EvolutionProposer`."""

_Layers = tuple[str, ...]
_Candidate = tuple[_Layers, str]  # (layers, plan)


class BaseProposer(ABC):
    """Answers one action with one proposal (the contract LLM agents share).

    `propose` never raises for a well-formed action: a proposal it cannot make is returned with
    `Proposal.error` set. It raises ValueError only for a malformed action (e.g. Improve without
    a parent, a parent missing from the tree, or an operator it does not handle).
    """

    name: ClassVar[str]

    @abstractmethod
    def propose(self, action: Action, tree: SearchTree, rng: random.Random) -> Proposal:
        """The proposal for `action` given the agent's `tree`, drawing randomness from `rng`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RandomProposer(BaseProposer):
    """Uniform random drafts and point-mutation improvements.

    Attributes:
        alphabet: primitives of the search space.
        length: number of layers (16 in the paper).
        max_tries: attempts to find an arrangement not yet in the tree.
    """

    name: ClassVar[str] = "random"
    alphabet: tuple[str, ...] = PRIMITIVES
    length: int = 16
    max_tries: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphabet", tuple(self.alphabet))
        _validate(self.alphabet, self.length, self.max_tries)

    def propose(self, action: Action, tree: SearchTree, rng: random.Random) -> Proposal:
        return _propose(
            self, action, tree, rng, lambda layers, r: _point(layers, r, self.alphabet)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EvolutionProposer(BaseProposer):
    """Regularised-evolution mutations (point / swap / segment copy) of the given parent.

    Attributes:
        alphabet: primitives of the search space.
        length: number of layers (16 in the paper).
        max_tries: attempts to find an arrangement not yet in the tree.
        mutations: the mutation operators to choose from uniformly (a subset of `MUTATIONS`).
    """

    name: ClassVar[str] = "evolution"
    alphabet: tuple[str, ...] = PRIMITIVES
    length: int = 16
    max_tries: int = 8
    mutations: tuple[str, ...] = MUTATIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphabet", tuple(self.alphabet))
        _validate(self.alphabet, self.length, self.max_tries)
        object.__setattr__(self, "mutations", tuple(self.mutations))
        bad = [m for m in self.mutations if m not in MUTATIONS]
        if not self.mutations or bad:
            raise ValueError(f"mutations must be a non-empty subset of {MUTATIONS}, got {bad}")

    def propose(self, action: Action, tree: SearchTree, rng: random.Random) -> Proposal:
        return _propose(self, action, tree, rng, self._mutate)

    def _mutate(self, layers: _Layers, rng: random.Random) -> _Candidate:
        kind = rng.choice(self.mutations)
        if kind == "swap":
            return _swap(layers, rng, self.alphabet)
        if kind == "segment_copy":
            return _segment_copy(layers, rng, self.alphabet)
        return _point(layers, rng, self.alphabet)


_Mutator = Callable[[_Layers, random.Random], _Candidate]


def _validate(alphabet: tuple[str, ...], length: int, max_tries: int) -> None:
    if not alphabet or any(p not in PRIMITIVES for p in alphabet):
        raise ValueError(f"alphabet must be a non-empty subset of {PRIMITIVES}, got {alphabet}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")


def _propose(
    proposer: RandomProposer | EvolutionProposer,
    action: Action,
    tree: SearchTree,
    rng: random.Random,
    mutate: _Mutator,
) -> Proposal:
    alphabet, length = proposer.alphabet, proposer.length
    op = action.operator
    make: Callable[[], _Candidate]
    if op is Operator.DRAFT:
        make = functools.partial(_draft, rng, alphabet, length)
    elif op in (Operator.IMPROVE, Operator.DEBUG):
        if action.parent_id is None or action.parent_id not in tree:
            raise ValueError(f"{op.value} needs a parent in the tree, got {action.parent_id}")
        parent = tree[action.parent_id]
        if op is Operator.IMPROVE:
            make = _improver(parent.proposal, alphabet, length, rng, mutate)
        else:
            make = _debugger(parent.proposal, parent.error, alphabet, length, rng)
    else:
        raise ValueError(f"{type(proposer).__name__} cannot answer operator {op.value!r}")
    for _ in range(proposer.max_tries):
        layers, plan = make()
        key = " ".join(layers)
        if not tree.has_proposal_key(key):
            break
    else:
        plan += " (every try repeated an arrangement already in the tree)"
    return Proposal(action=action, text=key, plan=plan)


def _draft(rng: random.Random, alphabet: tuple[str, ...], length: int) -> _Candidate:
    return random_arrangement(rng, alphabet, length).layers, "draft: uniformly random arrangement"


def _improver(
    text: str, alphabet: tuple[str, ...], length: int, rng: random.Random, mutate: _Mutator
) -> Callable[[], _Candidate]:
    try:
        parent = Arrangement.parse(text, alphabet=alphabet, length=length).layers
    except ArrangementError as exc:
        # The policy only improves good nodes, but stay total: start afresh.
        note = f"improve: parent is not a valid arrangement ({exc}); drafting instead"
        return lambda: (_draft(rng, alphabet, length)[0], note)
    return lambda: mutate(parent, rng)


def _debugger(
    text: str, error: str | None, alphabet: tuple[str, ...], length: int, rng: random.Random
) -> Callable[[], _Candidate]:
    """Repair the buggy parent, keeping its idea where possible (FACTS §2, Debug)."""
    reason = f" ({error})" if error else ""
    try:
        parent = Arrangement.parse(text, alphabet=alphabet, length=length).layers
    except ArrangementError:
        pass
    else:  # a valid arrangement that failed to evaluate: perturb it slightly

        def perturb() -> _Candidate:
            layers, what = _point(parent, rng, alphabet)
            return layers, f"debug: evaluation failed{reason}; retry with {what}"

        return perturb
    try:
        loose = Arrangement.parse(text).layers
    except ArrangementError:
        return lambda: (
            _draft(rng, alphabet, length)[0],
            f"debug: proposal unreadable{reason}; re-sampled a random arrangement",
        )

    def repair() -> _Candidate:
        fixed = [p if p in alphabet else rng.choice(alphabet) for p in loose[:length]]
        fixed += [rng.choice(alphabet) for _ in range(length - len(fixed))]
        return tuple(fixed), f"debug: repaired alphabet and length{reason} of {len(loose)} layers"

    return repair


def _point(layers: _Layers, rng: random.Random, alphabet: tuple[str, ...]) -> _Candidate:
    i = rng.randrange(len(layers))
    options = [p for p in alphabet if p != layers[i]]
    if not options:
        return layers, "point mutation: no alternative primitive"
    new = rng.choice(options)
    out = (*layers[:i], new, *layers[i + 1 :])
    return out, f"point mutation: layer {i + 1} {layers[i]} -> {new}"


def _swap(layers: _Layers, rng: random.Random, alphabet: tuple[str, ...]) -> _Candidate:
    pairs = [
        (i, j)
        for i in range(len(layers))
        for j in range(i + 1, len(layers))
        if layers[i] != layers[j]
    ]
    if not pairs:  # all layers equal: a swap cannot change anything
        return _point(layers, rng, alphabet)
    i, j = rng.choice(pairs)
    out = list(layers)
    out[i], out[j] = out[j], out[i]
    return tuple(out), f"swap: layers {i + 1} and {j + 1} ({layers[i]} <-> {layers[j]})"


def _segment_copy(layers: _Layers, rng: random.Random, alphabet: tuple[str, ...]) -> _Candidate:
    n = len(layers)
    for _ in range(8):
        k = rng.randint(1, max(1, n // 2))
        src, dst = rng.randrange(n - k + 1), rng.randrange(n - k + 1)
        out = (*layers[:dst], *layers[src : src + k], *layers[dst + k :])
        if out != layers:
            segment = " ".join(layers[src : src + k])
            return out, (
                f"segment copy: layers {src + 1}-{src + k} ({segment}) "
                f"copied over layers {dst + 1}-{dst + k}"
            )
    return _point(layers, rng, alphabet)


PROPOSERS: dict[str, type[RandomProposer] | type[EvolutionProposer]] = {
    RandomProposer.name: RandomProposer,
    EvolutionProposer.name: EvolutionProposer,
}
"""Proposer classes by name; `make_proposer` also knows ``"bo"`` (`populations.bo.BOProposer`,
imported on demand because it builds on `BaseProposer` from this module)."""


def make_proposer(name: str, **params: Any) -> BaseProposer:
    """Build a proposer (``"random"``, ``"evolution"`` or ``"bo"``) from its fields.

    Raises:
        ValueError: for an unknown name, an unknown parameter, or an invalid value.
    """
    cls: type[RandomProposer] | type[EvolutionProposer] | type[BOProposer]
    if name == "bo":  # imported on demand: it imports this module (and scikit-learn)
        from populations.bo import BOProposer

        cls = BOProposer
    elif name in PROPOSERS:
        cls = PROPOSERS[name]
    else:
        known = ", ".join(sorted([*PROPOSERS, "bo"]))
        raise ValueError(f"unknown proposer {name!r}; known: {known}")
    fields = set(cls.__dataclass_fields__)
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for proposer {name!r}; "
            f"known: {', '.join(sorted(fields))}"
        )
    return cls(**params)
