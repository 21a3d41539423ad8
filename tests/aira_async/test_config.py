from __future__ import annotations

from pathlib import Path

import pytest

from aira_async.config import DaemonConfig, load_population, parse_duration
from aira_async.errors import ConfigError
from tests.conftest import write_population

REPO = Path(__file__).resolve().parents[2]


def test_presets_load() -> None:
    for preset in sorted((REPO / "populations/presets").glob("*.toml")):
        config = load_population(preset)
        assert config.agents, preset


def test_roundtrip_through_dict(population: Path) -> None:
    config = load_population(population)
    again = DaemonConfig.from_dict(config.to_dict())
    assert again == config
    assert again.config_hash() == config.config_hash()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90.0), ("30m", 1800.0), ("24h", 86400.0), ("1.5d", 129600.0), ("45", 45.0)],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "10 parsecs", "-5m", "0s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text().replace("[task]\n", "[task]\ncolour = 'blue'\n"))
    with pytest.raises(ConfigError, match=r"task\.colour|'colour'"):
        load_population(path)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text().replace("length = 12", 'length = "twelve"'))
    with pytest.raises(ConfigError, match=r"task\.length"):
        load_population(path)


def test_malformed_toml(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[run\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_population(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_population(tmp_path / "nope.toml")


def test_unknown_island(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text().replace('island = "b"', 'island = "atlantis"'))
    with pytest.raises(ConfigError, match="atlantis"):
        load_population(path)


def test_overrides_only_documented_keys(population: Path) -> None:
    config = load_population(population)
    changed = config.with_overrides(**{"run.budget_s": 60.0, "run.max_nodes": 5})
    assert changed.run.budget_s == 60.0 and changed.run.max_nodes == 5
    assert changed.config_hash() == config.config_hash()
    with pytest.raises(ConfigError):
        config.with_overrides(**{"task.length": 3})


def test_count_expands_agents(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text().replace('name = "evo-mcts"', 'name = "evo-mcts"\ncount = 3'))
    names = [a.name for a in load_population(path).expanded_agents()]
    assert names == ["evo-greedy", "evo-mcts-1", "evo-mcts-2", "evo-mcts-3", "random-greedy"]


def test_fuse_and_compile(tmp_path: Path) -> None:
    path = write_population(tmp_path / "p.toml")
    plain = load_population(path)
    assert (plain.evaluation.fuse, plain.evaluation.compile, plain.evaluation.cuda_graph) == (
        1,
        False,
        True,
    )
    lines = "timeout_s = 30\nfuse = 4\ncompile = true\ncuda_graph = false\n"
    path.write_text(path.read_text().replace("timeout_s = 30\n", lines))
    config = load_population(path)
    assert (config.evaluation.fuse, config.evaluation.compile) == (4, True)
    assert config.evaluation.cuda_graph is False
    assert config.config_hash() == plain.config_hash(), "how jobs are batched decides no score"
    assert DaemonConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("fuse = 0", r"evaluation\.fuse must be an integer >= 1, got 0"),
        ('fuse = "x"', r"evaluation\.fuse expected int"),
        ("fuse = 2.5", r"evaluation\.fuse expected int"),
        ('compile = "yes"', r"evaluation\.compile expected bool"),
        ("cuda_graph = 1", r"evaluation\.cuda_graph expected bool"),
    ],
)
def test_bad_fuse_or_compile_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = write_population(tmp_path / "p.toml")
    path.write_text(path.read_text().replace("timeout_s = 30\n", f"timeout_s = 30\n{line}\n"))
    with pytest.raises(ConfigError, match=message):
        load_population(path)
