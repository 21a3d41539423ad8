"""Named baseline arrangements: what the paper and Composer compare found arrangements with.

Every baseline is a function of the depth (16 primitives by default, the search length), so the
same name gives the search-size proxy and, stretched or stacked, a large model:

- ``llama32``: Llama 3.2's alternation ``mA M mA M ...`` (one attention and one MLP per layer).
- ``striped-1:2``, ``striped-1:4``, ``striped-1:8``: Composer's striped attention:MLP baselines
  (FACTS §4): the period ``mA`` followed by k ``M``, repeated and cut at the depth, so at 16 the
  1:2 stripe is ``(mA M M)×5 mA`` (6 mA, 10 M), 1:4 is ``(mA M M M M)×3 mA`` (4 mA, 12 M) and
  1:8 is ``mA M×8 mA M×6`` (2 mA, 14 M).
- ``nemotron2``: an approximated Nemotron-2 hybrid with its MoE layers replaced by MLPs, as the
  paper compares (FACTS §1). Source: the NVIDIA Nemotron-Nano-9B-v2 layer pattern
  ``M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-`` (its ``hybrid_override_pattern``:
  ``M`` Mamba2, ``-`` FFN, ``*`` attention): 56 layers, 27 Mamba2 (48%), 25 FFN (45%), 4
  attention (7%), the mixers alternating with FFNs, the first layer a Mamba2 and the attention
  layers in the middle of the stack (relative depths 0.25-0.70). At our depth: mixer/MLP pairs
  ``Mb M``, with the mixer of pairs ⌊3/8·n⌋ and ⌊5/8·n⌋ (n pairs) attention instead, so 16
  primitives give ``Mb M Mb M Mb M mA M Mb M mA M Mb M Mb M`` (6 Mb, 2 mA, 8 M). Two attention
  layers (12.5%) rather than one (6%, nearer 7%) keep "a few mA" at this small depth; an odd
  depth ends with one more ``Mb``.

`resolve` turns a baseline name or any arrangement text into an `Arrangement`, so commands can
accept either (``aira extrapolate llama32 --target 1B``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from populations.arrangement import Arrangement

__all__ = ["BASELINES", "baseline", "is_baseline", "resolve"]

DEFAULT_DEPTH = 16


def _llama32(depth: int) -> tuple[str, ...]:
    return tuple("mA" if i % 2 == 0 else "M" for i in range(depth))


def _striped(k: int) -> Callable[[int], tuple[str, ...]]:
    def make(depth: int) -> tuple[str, ...]:
        return tuple("mA" if i % (k + 1) == 0 else "M" for i in range(depth))

    return make


def _nemotron2(depth: int) -> tuple[str, ...]:
    n_pairs = depth // 2
    attention = {(3 * n_pairs) // 8, (5 * n_pairs) // 8} if n_pairs else set()
    out: list[str] = []
    for pair in range(n_pairs):
        out += ["mA" if pair in attention else "Mb", "M"]
    if depth % 2:
        out.append("Mb")
    return tuple(out)


BASELINES: dict[str, Callable[[int], tuple[str, ...]]] = {
    "llama32": _llama32,
    "striped-1:2": _striped(2),
    "striped-1:4": _striped(4),
    "striped-1:8": _striped(8),
    "nemotron2": _nemotron2,
}
"""Baseline builders by name: depth -> layers."""

_ALIASES = {"llama": "llama32", "llama3.2": "llama32", "llama-3.2": "llama32",
            "nemotron": "nemotron2", "nemotron-2": "nemotron2"}  # fmt: skip


def _canonical_name(name: str) -> str | None:
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key.startswith("striped") and not key.startswith("striped-"):
        key = "striped-" + key[len("striped") :]
    return key if key in BASELINES else None


def is_baseline(name: str) -> bool:
    """Whether ``name`` names a baseline (case, ``_``/``-`` and a few aliases are forgiven)."""
    return _canonical_name(name) is not None


def baseline(name: str, depth: int = DEFAULT_DEPTH) -> Arrangement:
    """The baseline ``name`` at ``depth`` primitives.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or a depth below 1.
    """
    key = _canonical_name(name)
    if key is None:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    return Arrangement(layers=BASELINES[key](depth))


def resolve(
    text: str, *, depth: int | None = None, alphabet: Sequence[str] | None = None
) -> Arrangement:
    """A baseline name (at ``depth``, default 16) or arrangement text, as an `Arrangement`.

    Raises:
        ArrangementError: ``text`` is neither a baseline name nor a valid arrangement (of
            ``depth`` layers from ``alphabet`` when given).
    """
    if is_baseline(text):
        return baseline(text, DEFAULT_DEPTH if depth is None else depth)
    if alphabet is None:
        return Arrangement.parse(text, length=depth)
    return Arrangement.parse(text, alphabet=alphabet, length=depth)
