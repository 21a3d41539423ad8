"""The genome of AIRA-Compose: an arrangement of layer primitives, and its lenient parser.

An arrangement is a sequence of primitives (``mA`` attention, ``M`` MLP, ``Mb`` Mamba2), written
canonically as ``"mA M Mb M"``. People and LLMs write it in many shapes; `Arrangement.parse`
accepts:

- separators: spaces, commas, semicolons, pipes, arrows, quotes (``mA M``, ``mA,M``, ``'mA','M'``);
- brackets: ``[mA, M, Mb]``, nested groups;
- any letter case: ``ma``, ``MB``, ``m``;
- repetition: ``(mA M)x8``, ``(mA M)×8``, ``(mA M) * 8``, ``8x(mA M)``, ``mA×2``;
- fenced code blocks and surrounding prose: the fenced block, the whole text, or the last line
  (or the part of a line after ``:``/``=``, or a bracketed part) that parses is taken.

Anything else is rejected with a one-line `ArrangementError` naming the problem.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

PRIMITIVES: tuple[str, ...] = ("mA", "M", "Mb")
"""All primitives, canonical spelling, in a fixed order."""

TWO_PRIMITIVES: tuple[str, ...] = ("mA", "M")
"""The two-primitive search space {mA, M} (2^16 arrangements of 16 layers)."""

THREE_PRIMITIVES: tuple[str, ...] = PRIMITIVES
"""The three-primitive search space {mA, M, Mb} (3^16 arrangements of 16 layers)."""

MAX_LAYERS = 4096
"""Upper bound on a parsed arrangement, so ``(mA)x99999999`` cannot exhaust memory."""

_CANONICAL = {p.lower(): p for p in PRIMITIVES}

_TOKEN = re.compile(
    r"""
      (?P<prefix>\d+\s*[x×*]\s*(?=[(\[{A-Za-z]))   # 8x(mA M)
    | (?P<rep>[x×*]\s*\d+(?![A-Za-z]))             # (mA M)x8  mA×2
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    | (?P<name>[A-Za-z]+?(?=[x×*]\d+(?![A-Za-z]))|[A-Za-z][A-Za-z0-9_]*)   # Mx4 | mA
    | (?P<sep>(?:[\s,;.'"`|+/]|->|→|-)+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


class ArrangementError(ValueError):
    """Raised when text is not a valid arrangement; the message is one line naming the problem."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrangement:
    """An immutable sequence of canonical primitive names.

    Construct it with `Arrangement.parse` from text, or directly from canonical names:
    ``Arrangement(layers=("mA", "M"))``. Two arrangements are equal iff their layers are.

    Raises:
        ArrangementError: if `layers` is empty or holds a name that is not in `PRIMITIVES`.
    """

    layers: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.layers, tuple):
            object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ArrangementError("empty arrangement")
        for i, layer in enumerate(self.layers, start=1):
            if layer not in PRIMITIVES:
                raise ArrangementError(_unknown(layer, i, PRIMITIVES))

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        alphabet: Sequence[str] = PRIMITIVES,
        length: int | None = None,
    ) -> Arrangement:
        """Parse an arrangement written by a person or an LLM.

        Args:
            text: the reply or string to parse (see the module docstring for accepted forms).
            alphabet: the primitives of the search space; others are rejected.
            length: the required number of layers, or None for any length.

        Returns:
            The arrangement of the first candidate segment that parses and satisfies `alphabet`
            and `length`. Candidates, in order: fenced code blocks, the whole text, then each
            line from the last to the first (the line, the part after its last ``:``/``=``,
            and its bracketed parts).

        Raises:
            ArrangementError: if no candidate parses; the message is the error of the candidate
                that looked most like an arrangement.
            ValueError: if `alphabet` holds an unknown primitive or `length` is not positive.
        """
        allowed = _check_alphabet(alphabet)
        if length is not None and length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if not text.strip():
            raise ArrangementError("empty arrangement")
        best: tuple[int, str] | None = None
        for candidate in _candidates(text):
            try:
                layers = _parse_segment(candidate, allowed, length)
            except _SegmentError as exc:
                if best is None or exc.score > best[0]:
                    best = (exc.score, str(exc))
                continue
            return cls(layers=layers)
        assert best is not None  # the whole text is always a candidate
        raise ArrangementError(best[1])

    @property
    def key(self) -> str:
        """Canonical text, e.g. ``"mA M Mb"``: the identity used for caching and deduplication."""
        return " ".join(self.layers)

    def __str__(self) -> str:
        return self.key

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> str:
        return self.layers[index]

    def hamming(self, other: Arrangement) -> int:
        """Number of positions where the two arrangements differ (see `hamming_distance`)."""
        return hamming_distance(self, other)


def hamming_distance(a: Arrangement | Sequence[str], b: Arrangement | Sequence[str]) -> int:
    """Number of positions at which two equally long arrangements differ.

    Raises:
        ValueError: if the lengths differ.
    """
    la, lb = tuple(a), tuple(b)
    if len(la) != len(lb):
        raise ValueError(f"hamming distance needs equal lengths, got {len(la)} and {len(lb)}")
    return sum(x != y for x, y in zip(la, lb, strict=True))


def random_arrangement(rng: random.Random, alphabet: Sequence[str], length: int) -> Arrangement:
    """A uniformly random arrangement of `length` layers drawn from `alphabet` using `rng`."""
    allowed = _check_alphabet(alphabet)
    if length < 1:
        raise ValueError(f"length must be positive, got {length}")
    return Arrangement(layers=tuple(rng.choice(allowed) for _ in range(length)))


class _SegmentError(Exception):
    """A candidate segment failed; `score` ranks how much it looked like an arrangement."""

    def __init__(self, message: str, score: int) -> None:
        super().__init__(message)
        self.score = score


def _check_alphabet(alphabet: Sequence[str]) -> tuple[str, ...]:
    allowed = tuple(alphabet)
    if not allowed:
        raise ValueError("alphabet must not be empty")
    for p in allowed:
        if p not in PRIMITIVES:
            raise ValueError(
                f"alphabet holds unknown primitive {p!r}; known: {', '.join(PRIMITIVES)}"
            )
    return allowed


def _unknown(name: str, position: int, allowed: Sequence[str]) -> str:
    return f"unknown primitive {name!r} at position {position}; allowed: {', '.join(allowed)}"


def _candidates(text: str) -> Iterator[str]:
    """Segments of `text` worth trying, strongest first (see `Arrangement.parse`)."""
    yield from _FENCE.findall(text)
    stripped = text.replace("```", "\n")
    yield stripped
    for line in reversed(stripped.splitlines()):
        if not line.strip():
            continue
        yield line
        for mark in (":", "="):
            if mark in line:
                yield line.rsplit(mark, 1)[1]
        yield from _BRACKETED.findall(line)


def _parse_segment(segment: str, allowed: tuple[str, ...], length: int | None) -> tuple[str, ...]:
    tokens = [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(segment)]
    tokens = [t for t in tokens if t[0] != "sep"]
    names = [v for kind, v in tokens if kind == "name"]
    known = sum(v.lower() in _CANONICAL for v in names)
    score = known - (len(names) - known) - sum(kind == "other" for kind, _ in tokens)
    parser = _Parser(tokens, allowed, score)
    layers = parser.sequence(closing=None)
    if not layers:
        raise _SegmentError("empty arrangement", score)
    if length is not None and len(layers) != length:
        raise _SegmentError(f"arrangement has {len(layers)} layers; expected {length}", score)
    return tuple(layers)


class _Parser:
    """Recursive descent: seq := item*; item := [N x] atom [x N]; atom := name | (seq)."""

    def __init__(
        self, tokens: list[tuple[str, str]], allowed: tuple[str, ...], score: int
    ) -> None:
        self._tokens = tokens
        self._pos = 0
        self._allowed = allowed
        self._score = score
        self._n_layers = 0  # layers emitted so far, for 1-based error positions

    def _fail(self, message: str) -> _SegmentError:
        return _SegmentError(message, self._score)

    def sequence(self, closing: str | None) -> list[str]:
        out: list[str] = []
        while self._pos < len(self._tokens):
            kind, value = self._tokens[self._pos]
            if kind == "close":
                if value != closing:
                    raise self._fail(f"unbalanced bracket {value!r}")
                self._pos += 1
                return out
            out.extend(self._item())
        if closing is not None:
            raise self._fail(f"unbalanced brackets: missing {closing!r}")
        return out

    def _item(self) -> list[str]:
        kind, value = self._tokens[self._pos]
        count = 1
        if kind == "prefix":
            count = int(re.sub(r"\D", "", value))
            self._pos += 1
            if self._pos >= len(self._tokens):
                raise self._fail(f"repetition {value.strip()!r} has nothing to repeat")
            kind, value = self._tokens[self._pos]
        start = self._n_layers
        if kind == "open":
            self._pos += 1
            atom = self.sequence(closing=_PAIRS[value])
        elif kind == "name":
            self._pos += 1
            atom = [self._primitive(value)]
        elif kind == "rep":
            raise self._fail(f"repetition {value!r} has nothing to repeat")
        else:
            raise self._fail(f"unexpected {value!r} at position {self._n_layers + 1}")
        if self._pos < len(self._tokens) and self._tokens[self._pos][0] == "rep":
            count *= int(re.sub(r"\D", "", self._tokens[self._pos][1]))
            self._pos += 1
        if count < 1:
            raise self._fail("repetition count must be at least 1")
        if start + len(atom) * count > MAX_LAYERS:
            raise self._fail(f"arrangement longer than {MAX_LAYERS} layers")
        self._n_layers = start + len(atom) * count
        return atom * count

    def _primitive(self, name: str) -> str:
        position = self._n_layers + 1
        canonical = _CANONICAL.get(name.lower())
        if canonical is None:
            raise self._fail(_unknown(name, position, self._allowed))
        if canonical not in self._allowed:
            raise self._fail(
                f"primitive {canonical!r} at position {position} is outside the search space; "
                f"allowed: {', '.join(self._allowed)}"
            )
        self._n_layers += 1
        return canonical
