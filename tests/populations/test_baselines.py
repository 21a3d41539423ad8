"""Named baselines: their patterns at the search depth, any depth, and name resolution."""

from __future__ import annotations

import pytest

from populations.arrangement import Arrangement, ArrangementError
from populations.baselines import BASELINES, baseline, is_baseline, resolve


def test_patterns_at_the_search_depth() -> None:
    assert baseline("llama32").key == " ".join(["mA M"] * 8)
    assert baseline("striped-1:2").key == " ".join(["mA M M"] * 5 + ["mA"])
    assert baseline("striped-1:4").key == " ".join(["mA M M M M"] * 3 + ["mA"])
    assert baseline("striped-1:8").key == " ".join(["mA"] + ["M"] * 8 + ["mA"] + ["M"] * 6)
    assert baseline("nemotron2").key == "Mb M Mb M Mb M mA M Mb M mA M Mb M Mb M"


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("depth", [1, 7, 16, 32, 56])
def test_every_baseline_has_the_asked_depth(name: str, depth: int) -> None:
    layers = baseline(name, depth).layers
    assert len(layers) == depth
    if depth >= 16 and name.startswith("striped"):
        k = int(name.split(":")[1])
        assert layers.count("M") >= k * layers.count("mA") - k  # 1:k up to the cut period


def test_nemotron2_is_mostly_mamba_with_a_few_attention_layers() -> None:
    layers = baseline("nemotron2", 56).layers
    assert layers.count("mA") == 2 and layers.count("Mb") == 26 and layers.count("M") == 28
    assert layers[::2].count("Mb") == 26 and set(layers[1::2]) == {"M"}


def test_resolve_names_aliases_and_text() -> None:
    assert resolve("llama32") == baseline("llama32")
    assert resolve("Llama-3.2", depth=32) == Arrangement(layers=("mA", "M") * 16)
    assert resolve("striped_1:4") == baseline("striped-1:4")
    assert resolve("NEMOTRON") == baseline("nemotron2")
    assert resolve("(mA M)x2") == Arrangement(layers=("mA", "M", "mA", "M"))
    assert is_baseline("striped-1:2") and not is_baseline("mA M")
    with pytest.raises(ArrangementError):
        resolve("llama99")
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline("llama99")
