"""Arrangement parsing: every accepted form, every error message, and the helpers."""

from __future__ import annotations

import random
from typing import Any

import pytest

from populations.arrangement import (
    MAX_LAYERS,
    PRIMITIVES,
    THREE_PRIMITIVES,
    TWO_PRIMITIVES,
    Arrangement,
    ArrangementError,
    hamming_distance,
    random_arrangement,
)

ALT16 = " ".join(["mA", "M"] * 8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mA M Mb", "mA M Mb"),
        ("  mA   M\tMb \n", "mA M Mb"),
        ("mA,M,Mb", "mA M Mb"),
        ("mA, M, Mb", "mA M Mb"),
        ("mA;M;Mb", "mA M Mb"),
        ("mA | M | Mb", "mA M Mb"),
        ("mA -> M -> Mb", "mA M Mb"),
        ("mA → M → Mb", "mA M Mb"),
        ("[mA, M, Mb]", "mA M Mb"),
        ("['mA','M']", "mA M"),
        ('["mA", "M", "Mb"]', "mA M Mb"),
        ("(mA, M)", "mA M"),
        ("ma MB m", "mA Mb M"),
        ("MA mb M", "mA Mb M"),
        ("(mA M)x8", ALT16),
        ("(mA M)×8", ALT16),
        ("(mA M) x 8", ALT16),
        ("(mA M)*8", ALT16),
        ("[mA, M] x8", ALT16),
        ("8x(mA M)", ALT16),
        ("8 × (mA M)", ALT16),
        ("Mx3 mA", "M M M mA"),
        ("mA×2 M", "mA mA M"),
        ("(mA (M Mb)x2)x2", "mA M Mb M Mb mA M Mb M Mb"),
        ("mA M Mb.", "mA M Mb"),
        ("```\nmA M Mb\n```", "mA M Mb"),
        ("```text\n[mA, M]\n```", "mA M"),
        ("Here is my proposal:\n```\nmA M\n```\nIt alternates.", "mA M"),
        ("I keep attention early.\nmA M Mb\nThis should help recall.", "mA M Mb"),
        ("Arrangement: mA M Mb", "mA M Mb"),
        ("layers = [mA, M, M]", "mA M M"),
        ("My final answer is [Mb, M].", "Mb M"),
        ("mA M\nmA M", "mA M mA M"),
    ],
)
def test_parse_accepts(text: str, expected: str) -> None:
    assert Arrangement.parse(text).key == expected


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "empty arrangement"),
        ("   \n\t", {}, "empty arrangement"),
        ("[]", {}, "empty arrangement"),
        ("```\n```", {}, "empty arrangement"),
        ("mA X Mb", {}, "unknown primitive 'X' at position 2; allowed: mA, M, Mb"),
        ("mA M attention", {}, "unknown primitive 'attention' at position 3; allowed: mA, M, Mb"),
        ("(mA M)x2 Q", {}, "unknown primitive 'Q' at position 5; allowed: mA, M, Mb"),
        (
            "mA X",
            {"alphabet": TWO_PRIMITIVES},
            "unknown primitive 'X' at position 2; allowed: mA, M",
        ),
        ("mA M", {"length": 3}, "arrangement has 2 layers; expected 3"),
        ("(mA M)x8", {"length": 15}, "arrangement has 16 layers; expected 15"),
        (
            "mA M Mb",
            {"alphabet": TWO_PRIMITIVES},
            "primitive 'Mb' at position 3 is outside the search space; allowed: mA, M",
        ),
        (
            "mb",
            {"alphabet": ("mA",)},
            "primitive 'Mb' at position 1 is outside the search space; allowed: mA",
        ),
        ("(mA M", {}, "unbalanced brackets: missing ')'"),
        ("mA M)", {}, "unbalanced bracket ')'"),
        ("[mA M)", {}, "unbalanced bracket ')'"),
        ("x8", {}, "repetition 'x8' has nothing to repeat"),
        ("(mA)x0", {}, "repetition count must be at least 1"),
        ("(mA)x99999", {}, f"arrangement longer than {MAX_LAYERS} layers"),
        ("mA M 7", {}, "unexpected '7' at position 3"),
        ("Arrangement: mA X Mb", {}, "unknown primitive 'X' at position 2; allowed: mA, M, Mb"),
    ],
)
def test_parse_rejects_with_one_line_message(
    text: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ArrangementError) as info:
        Arrangement.parse(text, **kwargs)
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_length_selects_the_segment_that_fits() -> None:
    reply = "Parent was mA M.\nNew arrangement:\nmA M Mb M\nDone."
    assert Arrangement.parse(reply, length=4).key == "mA M Mb M"


def test_last_parsing_line_wins_and_fence_beats_prose() -> None:
    assert Arrangement.parse("M M\nthen\nmA mA").key == "mA mA"
    assert Arrangement.parse("mA mA\n```\nM Mb\n```").key == "M Mb"


def test_prose_error_names_the_most_arrangement_like_segment() -> None:
    reply = "Thinking about it.\nArrangement: mA Q M"
    with pytest.raises(ArrangementError, match="unknown primitive 'Q' at position 2"):
        Arrangement.parse(reply)


def test_parse_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="length must be positive"):
        Arrangement.parse("mA", length=0)
    with pytest.raises(ValueError, match="unknown primitive 'Xx'"):
        Arrangement.parse("mA", alphabet=("mA", "Xx"))
    with pytest.raises(ValueError, match="alphabet must not be empty"):
        Arrangement.parse("mA", alphabet=())


def test_key_str_len_iter_and_equality() -> None:
    a = Arrangement.parse("[ma, mb, m]")
    assert a.key == str(a) == "mA Mb M"
    assert len(a) == 3
    assert list(a) == ["mA", "Mb", "M"]
    assert a[1] == "Mb"
    assert a == Arrangement(layers=("mA", "Mb", "M"))
    assert hash(a) == hash(Arrangement(layers=("mA", "Mb", "M")))
    assert Arrangement.parse(a.key) == a  # the canonical form round-trips


def test_direct_construction_validates() -> None:
    assert Arrangement(layers=["mA", "M"]).layers == ("mA", "M")  # type: ignore[arg-type]
    with pytest.raises(ArrangementError, match="empty arrangement"):
        Arrangement(layers=())
    with pytest.raises(ArrangementError, match="unknown primitive 'ma' at position 1"):
        Arrangement(layers=("ma",))


def test_search_spaces() -> None:
    assert PRIMITIVES == THREE_PRIMITIVES == ("mA", "M", "Mb")
    assert set(TWO_PRIMITIVES) == {"mA", "M"}


def test_hamming_distance() -> None:
    a, b = Arrangement.parse("mA M Mb M"), Arrangement.parse("mA Mb Mb mA")
    assert hamming_distance(a, b) == 2 == a.hamming(b) == hamming_distance(a.layers, list(b))
    assert hamming_distance(a, a) == 0
    with pytest.raises(ValueError, match="equal lengths, got 4 and 2"):
        hamming_distance(a, Arrangement.parse("mA M"))


def test_random_arrangement_is_seeded_and_in_alphabet() -> None:
    a = random_arrangement(random.Random(3), TWO_PRIMITIVES, 16)
    assert a == random_arrangement(random.Random(3), TWO_PRIMITIVES, 16)
    assert len(a) == 16 and set(a) <= set(TWO_PRIMITIVES)
    seen = {random_arrangement(random.Random(s), PRIMITIVES, 16).key for s in range(20)}
    assert len(seen) == 20
    with pytest.raises(ValueError, match="length must be positive"):
        random_arrangement(random.Random(0), PRIMITIVES, 0)
