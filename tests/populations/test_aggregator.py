"""Composer's aggregator on a constructed pool: each variant gives the hand-computed result."""

from __future__ import annotations

import pytest

from populations.aggregator import Submission, Variant, aggregate


def sub(text: str, score: float, node_id: int | None = None) -> Submission:
    return Submission(layers=tuple(text.split()), score=score, node_id=node_id)


# The cluster A..F (pairwise linked within Hamming 2) and a far, better-scoring pair G, H.
A, B, C = "mA M M M", "M mA mA M", "mA M mA mA"
D, E, F = "M M M M", "mA M mA M", "mA mA mA mA"
G, H = "Mb Mb Mb Mb", "Mb Mb Mb M"
POOL = [
    sub(G, 0.95, 1),
    sub(H, 0.94, 2),
    sub(A, 0.90, 3),
    sub(B, 0.89, 4),
    sub(C, 0.88, 5),
    sub(D, 0.86, 6),
    sub(D, 0.88, 7),  # D twice: pooled to one candidate of mean 0.87
    sub(E, 0.86, 8),
    sub(F, 0.85, 9),
    sub("mA M", 0.99, 10),  # another depth: dropped
]

# Hand computation over the cluster {A, B, C, D, E, F}:
# N_0   layer 1: mA {A,C,E,F} 4 vs M {B,D} 2 -> mA; layer 2: M {A,C,D,E} 4 -> M;
#       layer 3: mA {B,C,E,F} 4 -> mA; layer 4: M {A,B,D,E} 4 -> M.          => mA M mA M
# N_1   layer 2 | layer 1 = mA: {A,C,E,F}: M 3, mA 1 -> M;
#       layer 3 | layer 2 = M: {A,C,D,E}: M {A,D} 2, mA {C,E} 2, a tie; mean scores
#       M (0.90 + 0.87)/2 = 0.885 > mA (0.88 + 0.86)/2 = 0.87 -> M;
#       layer 4 | layer 3 = M: {A,D}: M 2 -> M.                                => mA M M M
# N_all layer 3 | mA M: {A,C,E}: mA 2 -> mA; layer 4 | mA M mA: {C,E}: mA 1, M 1, a tie;
#       mean scores mA 0.88 > M 0.86 -> mA.                                   => mA M mA mA (C)
EXPECTED = {Variant.N_0: "mA M mA M", Variant.N_1: "mA M M M", Variant.N_ALL: "mA M mA mA"}


@pytest.mark.parametrize("variant", list(Variant))
def test_each_variant_gives_the_hand_computed_arrangement(variant: Variant) -> None:
    result = aggregate(POOL, top=8, variant=variant, radius=2)
    assert result.arrangement.key == EXPECTED[variant]
    assert result.n_submissions == 10 and result.n_dropped == 1
    assert [c.key for c in result.candidates] == [G, H, A, B, C, D, E, F]
    assert result.candidates[5].score == pytest.approx(0.87)
    assert result.candidates[5].node_ids == (6, 7)
    # The larger cluster votes even though the other holds the two best candidates.
    assert {c.key for c in result.members} == {A, B, C, D, E, F}
    assert sorted(len(c) for c in result.clusters) == [2, 6]


def test_decisions_explain_each_layer() -> None:
    n1 = aggregate(POOL, top=8, variant="N_1", radius=2).decisions
    assert [d.position for d in n1] == [1, 2, 3, 4]
    assert n1[0].context == {} and n1[0].counts == {"mA": 4, "M": 2}
    assert n1[2].context == {2: "M"} and n1[2].support == 4
    assert n1[2].counts == {"mA": 2, "M": 2}
    assert n1[2].mean_scores["M"] == pytest.approx(0.885)
    assert "tie" in n1[2].reason and "mean score" in n1[2].reason
    n_all = aggregate(POOL, top=8, variant="N_all", radius=2).decisions
    assert n_all[3].context == {1: "mA", 2: "M", 3: "mA"} and n_all[3].support == 2
    n0 = aggregate(POOL, top=8, variant="N_0", radius=2).decisions
    assert all(d.context == {} and d.support == 6 for d in n0)
    assert n0[1].reason == "majority 4/6"


def test_top_limits_the_candidates() -> None:
    result = aggregate(POOL, top=2, variant="N_0", radius=2)
    assert [c.key for c in result.members] == [G, H]
    assert result.arrangement.key == G  # layer 4: Mb 1 vs M 1, Mb's voter scores better


def test_minimising_mirrors_maximising() -> None:
    flipped = [Submission(layers=s.layers, score=-s.score) for s in POOL]
    for variant, expected in EXPECTED.items():
        result = aggregate(flipped, top=8, variant=variant, radius=2, maximize=False)
        assert result.arrangement.key == expected


def test_default_radius_and_errors() -> None:
    assert aggregate(POOL, top=8).radius == 1  # max(1, 4 // 4)
    with pytest.raises(ValueError, match="no submissions"):
        aggregate([], top=3)
    with pytest.raises(ValueError, match="top"):
        aggregate(POOL, top=0)
    with pytest.raises(ValueError, match="variant"):
        aggregate(POOL, top=3, variant="N_2")
