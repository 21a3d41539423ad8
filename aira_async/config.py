"""The daemon's configuration: one tree of frozen dataclasses, loaded from a population TOML file.

A population file has these sections (see `populations/presets/offline.toml`):

    [run]         name, seed, budget ("24h", "30m", "90s" or seconds), max_nodes, shutdown_grace_s
    [task]        name ("mad" | "babistories" | "dclm" | "synthetic"), fidelity, seed, length,
                  alphabet, test_eval, latency_s, data (LM tasks: hf:ID[:CONFIG], a directory or
                  a file; default $AIRA_DATA_DIR/<task name> when that directory exists);
                  description, lower_is_better, source are filled from an AIRS-Bench task
                  directory (`aira run --task DIR`, `aira_async.airs_bench`)
    [evaluation]  backend ("process" | "inline"), device ("cpu" | "cuda" | "auto"), workers,
                  timeout_s (per job; a fused batch of n jobs gets n times it),
                  threads_per_worker, fuse (the most MAD requests one worker trains together;
                  1 = one at a time), compile (torch.compile the fused blocks; CUDA only),
                  cuda_graph (with compile: replay the fused training steps from CUDA graphs;
                  default true)
    [llm]         timeout_s (per attempt), deadline_s (per call, retries included), max_retries,
                  backoff_s, backoff_max_s, max_retry_after_s, default_concurrency,
                  [llm.concurrency] (provider = calls in flight), cost_cap_usd,
                  [llm.prices."model"] input_per_mtok, output_per_mtok (USD per million tokens)
    [[islands]]   name
    [migration]   topology ("ring" | "random" | "full"), every_nodes, every_s, top_k, n_random
                  (islands exchange their top-k nodes by reference; off unless every_nodes or
                  every_s is set; see `populations.islands`)
    [collapse]    every_nodes, window, max_duplicate_rate, min_entropy, min_lineages, response
                  ("log" | "explore" | "reseed"), explore_steps, reseed_k (the per-island
                  diversity-collapse monitor; off unless every_nodes is set; see
                  `populations.collapse`)
    [[agents]]    name, island, proposer, policy, count, max_steps, [agents.policy_params],
                  [agents.proposer_params]; LLM agents (proposer = "llm"): provider ("openai" |
                  "anthropic" | "openai-compatible"), model, base_url, api_key_env, temperature,
                  top_p, max_tokens, sampling (false: never send temperature/top_p),
                  structured_output, analyze, memory_limit

Every key is checked: an unknown key or a value of the wrong type raises `ConfigError` naming the
file and the key. The resolved config (`DaemonConfig.to_dict`) is stored in the archive, and
`aira resume` rebuilds the config from it; only the keys in `OVERRIDABLE` may change on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aira_async.errors import ConfigError
from populations.collapse import CollapseRule
from populations.islands import MigrationRule

OVERRIDABLE = ("run.budget_s", "run.max_nodes")
"""Keys the CLI may set on `run` and `resume`; everything else comes from the population file."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int, *, key: str = "duration") -> float:
    """Seconds in `value`: a number of seconds or a string such as "90s", "30m", "24h", "1.5d"."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if match is None:
            raise ConfigError(
                f"{key}: cannot read {value!r} as a duration (try '30m', '24h', '90s')"
            )
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{key}: a duration must be positive, got {value!r}")
    return seconds


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    name: str = "aira"
    seed: int = 0
    budget_s: float = 24 * 3600.0
    max_nodes: int | None = None
    shutdown_grace_s: float = 30.0
    heartbeat_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_nodes is not None and self.max_nodes < 1:
            raise ConfigError(f"run.max_nodes must be at least 1, got {self.max_nodes}")
        if self.shutdown_grace_s < 0 or self.heartbeat_s <= 0:
            raise ConfigError("run.shutdown_grace_s must be >= 0 and run.heartbeat_s > 0")


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    name: str = "mad"
    fidelity: str = "smoke"
    seed: int = 0
    length: int = 16
    alphabet: tuple[str, ...] = ("mA", "M", "Mb")
    test_eval: bool = True
    latency_s: float = 0.0
    """Synthetic task only: how long each evaluation sleeps, to imitate training."""
    data: str | None = None
    """LM tasks: where the corpus is (`primitives.lm_data.parse_source`)."""
    description: str | None = None
    """The agents' project description, replacing the registry's (an AIRS-Bench task)."""
    lower_is_better: bool | None = None
    """The metric direction an AIRS-Bench task states (checked against the evaluator's)."""
    source: str | None = None
    """The AIRS-Bench task directory this section was read from, if any."""

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ConfigError(f"task.length must be at least 1, got {self.length}")
        if not self.alphabet:
            raise ConfigError("task.alphabet must name at least one primitive")


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    backend: str = "process"
    device: str = "cpu"
    workers: int = 1
    timeout_s: float = 900.0
    threads_per_worker: int = 1
    fuse: int = 1
    """The most compatible MAD requests one worker trains together (`primitives.fused`)."""
    compile: bool = False
    """torch.compile the fused blocks (CUDA workers only; ignored on the CPU)."""
    cuda_graph: bool = True
    """With `compile`: replay the fused training steps from CUDA graphs (CUDA workers only)."""

    def __post_init__(self) -> None:
        if self.backend not in ("process", "inline"):
            raise ConfigError(
                f"evaluation.backend must be 'process' or 'inline', got {self.backend!r}"
            )
        if self.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"evaluation.device must be cpu, cuda or auto, got {self.device!r}")
        if self.workers < 1 or self.threads_per_worker < 1:
            raise ConfigError("evaluation.workers and evaluation.threads_per_worker must be >= 1")
        if self.timeout_s <= 0:
            raise ConfigError(f"evaluation.timeout_s must be positive, got {self.timeout_s}")
        if self.fuse < 1:
            raise ConfigError(f"evaluation.fuse must be an integer >= 1, got {self.fuse}")


@dataclass(frozen=True, kw_only=True)
class IslandConfig:
    name: str


@dataclass(frozen=True, kw_only=True)
class MigrationConfig:
    """The `[migration]` section (`populations.islands.MigrationRule`; off by default)."""

    topology: str = "ring"
    every_nodes: int | None = None
    every_s: float | None = None
    top_k: int = 2
    n_random: int = 1

    def __post_init__(self) -> None:
        try:
            self.rule(seed=0)
        except ValueError as exc:
            raise ConfigError(f"migration: {exc}") from None

    @property
    def enabled(self) -> bool:
        return self.every_nodes is not None or self.every_s is not None

    def rule(self, *, seed: int) -> MigrationRule:
        return MigrationRule(
            topology=self.topology,  # type: ignore[arg-type]  # checked by MigrationRule
            every_nodes=self.every_nodes,
            every_s=self.every_s,
            top_k=self.top_k,
            n_random=self.n_random,
            seed=seed,
        )


@dataclass(frozen=True, kw_only=True)
class CollapseConfig:
    """The `[collapse]` section (`populations.collapse.CollapseRule`; off by default)."""

    every_nodes: int | None = None
    window: int = 30
    max_duplicate_rate: float | None = 0.5
    min_entropy: float | None = 0.2
    min_lineages: float | None = 1.5
    response: str = "log"
    explore_steps: int = 2
    reseed_k: int = 2

    def __post_init__(self) -> None:
        try:
            self.rule()
        except ValueError as exc:
            raise ConfigError(f"collapse: {exc}") from None

    def rule(self) -> CollapseRule:
        return CollapseRule(
            every_nodes=self.every_nodes,
            window=self.window,
            max_duplicate_rate=self.max_duplicate_rate,
            min_entropy=self.min_entropy,
            min_lineages=self.min_lineages,
            response=self.response,  # type: ignore[arg-type]  # checked by CollapseRule
            explore_steps=self.explore_steps,
            reseed_k=self.reseed_k,
        )


LLM_PROVIDERS = ("openai", "anthropic", "openai-compatible")


@dataclass(frozen=True, kw_only=True)
class LLMConfig:
    """The `[llm]` section: limits shared by every LLM agent of a run.

    `prices` maps a model name to ``{input_per_mtok = $, output_per_mtok = $}`` (USD per million
    tokens); `concurrency` maps a provider to its largest number of calls in flight.
    """

    timeout_s: float = 120.0
    deadline_s: float = 600.0
    max_retries: int = 6
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 120.0
    concurrency: Mapping[str, Any] = field(default_factory=dict)
    default_concurrency: int = 8
    prices: Mapping[str, Any] = field(default_factory=dict)
    cost_cap_usd: float | None = None

    def __post_init__(self) -> None:
        if min(self.timeout_s, self.deadline_s, self.backoff_max_s) <= 0 or self.backoff_s < 0:
            raise ConfigError("llm: timeout_s, deadline_s and backoff_max_s must be positive")
        if self.max_retries < 0 or self.max_retry_after_s < 0:
            raise ConfigError("llm.max_retries and llm.max_retry_after_s must be >= 0")
        if self.cost_cap_usd is not None and self.cost_cap_usd <= 0:
            raise ConfigError(f"llm.cost_cap_usd must be positive, got {self.cost_cap_usd}")
        limits = {**self.concurrency, "default_concurrency": self.default_concurrency}
        for provider, limit in limits.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ConfigError(f"llm.concurrency.{provider} must be an integer >= 1")
        for model, price in self.prices.items():
            keys = {"input_per_mtok", "output_per_mtok"}
            if not isinstance(price, Mapping) or set(price) != keys:
                raise ConfigError(f"llm.prices.{model} must be a table of {sorted(keys)}")
            for key in keys:
                value = price[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ConfigError(f"llm.prices.{model}.{key} must be a number >= 0")

    def limit(self, provider: str) -> int:
        """How many calls to `provider` may be in flight at once."""
        return int(self.concurrency.get(provider, self.default_concurrency))


def _check_llm_agent(agent: AgentConfig) -> None:
    where = f"agents.{agent.name}"
    if agent.provider not in LLM_PROVIDERS:
        raise ConfigError(
            f"{where}.provider: unknown provider {agent.provider!r}"
            f" (known: {', '.join(LLM_PROVIDERS)})"
        )
    if not agent.model:
        raise ConfigError(f"{where}.model: an LLM agent needs a model name")
    if agent.provider == "openai-compatible" and not agent.base_url:
        raise ConfigError(f"{where}.base_url: an openai-compatible agent needs the server's URL")
    if agent.max_tokens < 1 or agent.memory_limit < 0:
        raise ConfigError(f"{where}: max_tokens must be >= 1 and memory_limit >= 0")


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    name: str
    island: str | None = None
    proposer: str = "evolution"
    policy: str = "greedy"
    count: int = 1
    max_steps: int | None = None
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    proposer_params: Mapping[str, Any] = field(default_factory=dict)
    # LLM agents (proposer = "llm"); see `aira_async.agents.llm` and the README.
    provider: str = "openai"
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 4096
    sampling: bool = True
    structured_output: bool = True
    analyze: bool = False
    memory_limit: int = 20

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError(f"agents.{self.name}.count must be at least 1, got {self.count}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"agents.{self.name}.max_steps must be at least 1")
        if self.proposer == "llm":
            _check_llm_agent(self)


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    run: RunConfig = field(default_factory=RunConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    islands: tuple[IslandConfig, ...] = ()
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    agents: tuple[AgentConfig, ...] = ()

    def __post_init__(self) -> None:
        if not self.agents:
            raise ConfigError("a population needs at least one [[agents]] entry")
        island_names = [island.name for island in self.islands]
        if len(set(island_names)) != len(island_names):
            raise ConfigError(f"islands: duplicate island names in {island_names}")
        if self.migration.enabled and len(island_names) < 2:
            raise ConfigError("migration: needs at least two [[islands]]")
        seen: set[str] = set()
        for agent in self.agents:
            if agent.name in seen:
                raise ConfigError(f"agents: duplicate agent name {agent.name!r}")
            seen.add(agent.name)
            if agent.island is not None and agent.island not in island_names:
                raise ConfigError(
                    f"agents.{agent.name}.island: unknown island {agent.island!r}"
                    f" (declared: {', '.join(island_names) or 'none'})"
                )

    def expanded_agents(self) -> list[AgentConfig]:
        """One entry per agent instance: `count = 3` becomes name-1, name-2, name-3."""
        out: list[AgentConfig] = []
        for agent in self.agents:
            if agent.count == 1:
                out.append(agent)
                continue
            for i in range(1, agent.count + 1):
                out.append(dataclasses.replace(agent, name=f"{agent.name}-{i}", count=1))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that `from_dict` turns back into an equal config."""
        return typing.cast(dict[str, Any], json.loads(json.dumps(dataclasses.asdict(self))))

    def config_hash(self) -> str:
        """Hash of what decides evaluation results (task section); budget changes keep it."""
        payload = json.dumps(dataclasses.asdict(self.task), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def with_overrides(self, **overrides: Any) -> DaemonConfig:
        """A copy with `run.budget_s` / `run.max_nodes` replaced (the only CLI-settable keys)."""
        run_changes: dict[str, Any] = {}
        for dotted, value in overrides.items():
            key = dotted.replace("__", ".")
            if key not in OVERRIDABLE:
                raise ConfigError(f"{key} cannot be set from the command line ({OVERRIDABLE})")
            if value is not None:
                run_changes[key.split(".", 1)[1]] = value
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **run_changes))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> DaemonConfig:
        raw = dict(data)
        if "run" in raw and isinstance(raw["run"], Mapping) and "budget" in raw["run"]:
            run = dict(raw["run"])
            run["budget_s"] = parse_duration(run.pop("budget"), key=f"{source}: run.budget")
            raw["run"] = run
        result = _build(cls, raw, f"{source}:")
        assert isinstance(result, DaemonConfig)
        return result


def load_population(path: str | Path) -> DaemonConfig:
    """Read and validate a population TOML file.

    Raises:
        ConfigError: the file is missing, is not TOML, or holds an unknown key or a bad value.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"population file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    config = DaemonConfig.from_dict(data, source=str(path))
    if config.task.data is None and (found := data_from_env(config.task.name)) is not None:
        config = dataclasses.replace(config, task=dataclasses.replace(config.task, data=found))
    return config


DATA_ENV = "AIRA_DATA_DIR"
"""A root of corpora: task `name` reads `$AIRA_DATA_DIR/name` unless `task.data` is set."""


def data_from_env(task_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """`$AIRA_DATA_DIR/<task_name>` when that directory exists, else None (config loading only)."""
    root = (os.environ if environ is None else environ).get(DATA_ENV)
    if not root:
        return None
    path = Path(root) / task_name
    return str(path) if path.is_dir() else None


def _build(tp: Any, value: Any, where: str) -> Any:
    """Turn plain TOML/JSON data into `tp`, checking keys and types; errors name `where`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} expected a table, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(
                f"{where} unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})"
            )
        sep = "" if where.endswith(":") else "."
        kwargs = {k: _build(hints[k], v, f"{where}{sep}{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except TypeError as exc:  # a required key is missing
            raise ConfigError(f"{where} {exc}") from None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _build(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_build(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} expected a table, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} expected a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
            raise ConfigError(f"{where} expected {tp.__name__}, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where} unsupported config type {tp!r}")  # pragma: no cover
