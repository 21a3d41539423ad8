"""The `[migration]` and `[collapse]` sections of a population file."""

from __future__ import annotations

from pathlib import Path

import pytest

from aira_async.config import DaemonConfig, load_population
from aira_async.errors import ConfigError
from populations.collapse import Response
from populations.islands import Topology
from tests.conftest import write_population

SECTIONS = """
[migration]
topology = "random"
every_nodes = 12
every_s = 300
top_k = 3
n_random = 1

[collapse]
every_nodes = 10
window = 20
min_lineages = 2.0
max_duplicate_rate = 0.3
response = "explore"
explore_steps = 3
"""


def _population(tmp_path: Path, extra: str) -> Path:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text() + extra)
    return path


def test_sections_load_and_round_trip(tmp_path: Path) -> None:
    config = load_population(_population(tmp_path, SECTIONS))
    rule = config.migration.rule(seed=config.run.seed)
    assert (rule.topology, rule.every_nodes, rule.every_s, rule.top_k) == (
        Topology.RANDOM, 12, 300.0, 3,
    )  # fmt: skip
    watch = config.collapse.rule()
    assert (watch.response, watch.window, watch.min_lineages) == (Response.EXPLORE, 20, 2.0)
    assert DaemonConfig.from_dict(config.to_dict()) == config
    plain = load_population(write_population(tmp_path / "plain.toml"))
    assert not plain.migration.enabled and not plain.collapse.rule().enabled


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[migration]\nevery_nodes = 5\nring = true\n", "unknown key 'ring'"),
        ('[migration]\nevery_nodes = 5\ntopology = "star"\n', "star"),
        ("[migration]\nevery_nodes = 0\n", "every_nodes"),
        ('[collapse]\nevery_nodes = 5\nresponse = "panic"\n', "panic"),
        ("[collapse]\nwindow = 1\n", "window"),
    ],
)
def test_bad_sections_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_population(_population(tmp_path, extra))


def test_migration_needs_two_islands(tmp_path: Path) -> None:
    path = _population(tmp_path, "[migration]\nevery_nodes = 5\n")
    text = path.read_text().replace('[[islands]]\nname = "b"\n', "")
    path.write_text(text.replace('island = "b"', 'island = "a"'))
    with pytest.raises(ConfigError, match="two"):
        load_population(path)
