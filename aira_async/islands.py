"""The island exchanger: the daemon service that migrates nodes between islands and watches each
island for diversity collapse.

It learns of every committed node result through `RunState.finished_listeners`, and wakes when
one arrives (or every `_POLL_S`). For each island, in configuration order:

- **Migration** (`[migration]`, `populations.islands`): when a round is due (every
  `every_nodes` finished nodes of the island, or `every_s` seconds since its last round), it picks
  each neighbour's migrants with `select_migrants` from the island's own finished nodes plus
  those it received, writes the migration rows and a ``"migration"`` event in one transaction
  (`Archive.add_migrations`), then hands each new migrant to every runner of the receiving island
  (`AgentRunner.receive`), which imports it into its tree before its next step. Migrants are
  references: the node is stored once; a (node, island) pair at most once.
- **Collapse monitor** (`[collapse]`, `populations.collapse`): every `every_nodes` finished nodes
  of the island it measures the latest window; if a threshold is crossed it applies the response
  (``log``; ``explore``: `AgentRunner.boost_exploration`; ``reseed``: the elite of the best other
  island, sent as migrants with policy ``"reseed"``) and records a ``"collapse"`` event.

**Resume.** The migrations table is the truth: every island's received nodes are read back
(`load_received`) and every runner of the island imports them when built, and the count-triggered
rounds already done are counted from the stored ``"migration"`` events, so a round that was due
but not written before a crash happens after the resume.

**Determinism.** Every decision is a pure function of the island's finished nodes and received
migrants at the moment the decision is taken, and the random topology is seeded by (run seed,
island, round). What is *not* deterministic under concurrency: which nodes of an island have
finished when its K-th result commits (agents of one island, and evaluations on several
workers, interleave), time-triggered rounds, and which step of a receiving agent first sees a
migrant. A run without `[migration]` and `[collapse]` is exactly as deterministic as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aira_async.agents.runner import AgentRunner
from aira_async.archive_io import ArchiveWriter
from aira_async.run_state import RunState
from populations import collapse, islands
from populations.records import NodeRecord
from store import Archive, NewMigration

log = logging.getLogger(__name__)

_POLL_S = 0.2
_THREAD_ABOVE = 2000  # pure computations over more nodes than this go to a thread
_T = TypeVar("_T")


async def load_received(
    writer: ArchiveWriter, archive: Archive, run_id: int
) -> dict[str, list[NodeRecord]]:
    """The nodes each island of the run received so far (island name → records by id)."""
    out: dict[str, list[NodeRecord]] = {}
    for island in await writer.call(archive.islands, run_id):
        out[island.name] = await writer.call(archive.received, run_id, island.island_id)
    return out


class IslandExchanger:
    """Migration and collapse monitoring for one run. Build it with `create`; run `run`.

    Concurrency: owned by the daemon's TaskGroup; all its state lives on the event loop.
    """

    def __init__(
        self,
        state: RunState,
        *,
        order: Sequence[str],
        island_ids: dict[str, int],
        homes: dict[int, str],
        runners: Sequence[AgentRunner],
        nodes: Sequence[NodeRecord],
        received: dict[str, list[NodeRecord]],
        count_rounds: dict[str, int],
    ) -> None:
        config = state.config
        self.state = state
        self.migration = config.migration.rule(seed=config.run.seed)
        self.collapse = config.collapse.rule()
        self.order = tuple(order)
        self._island_ids = island_ids
        self._homes = homes
        self._members: dict[str, list[AgentRunner]] = {name: [] for name in self.order}
        for runner in runners:
            home = homes.get(runner.agent_id)
            if home is not None:
                self._members[home].append(runner)
        self._agents: dict[str, set[int]] = {name: set() for name in self.order}
        for agent_id, home in homes.items():
            self._agents[home].add(agent_id)
        self._own: dict[str, list[NodeRecord]] = {name: [] for name in self.order}
        self._keys: dict[str, set[str]] = {name: set() for name in self.order}
        for node in sorted(nodes, key=lambda n: n.node_id):
            self._take(node)
        self._received = {n: {r.node_id: r for r in received.get(n, [])} for n in self.order}
        for name, got in self._received.items():
            self._keys[name].update(r.proposal_key for r in got.values())
        self._count_rounds = {name: count_rounds.get(name, 0) for name in self.order}
        self._rounds = dict(self._count_rounds)
        self._checks = {
            name: collapse.checks_due(len(self._own[name]), self.collapse) for name in self.order
        }
        now = time.monotonic()
        self._last_round = dict.fromkeys(self.order, now)
        self._wake = asyncio.Event()
        state.finished_listeners.append(self.notify)

    @classmethod
    async def create(
        cls,
        state: RunState,
        runners: Sequence[AgentRunner],
        nodes: Sequence[NodeRecord],
        received: dict[str, list[NodeRecord]],
    ) -> IslandExchanger | None:
        """The exchanger of a run, or None when neither migration nor the monitor is on."""
        config = state.config
        if not (config.migration.enabled or config.collapse.rule().enabled):
            return None
        writer, archive = state.writer, state.writer.archive
        stored = {i.name: i.island_id for i in await writer.call(archive.islands, state.run_id)}
        order = [i.name for i in config.islands if i.name in stored]
        agents = await writer.call(archive.agents, state.run_id)
        homes = {a.agent_id: a.island for a in agents if a.island is not None}
        count_rounds: dict[str, int] = {}
        for event in await writer.call(archive.events, state.run_id, "migration"):
            if event.payload.get("trigger") == "nodes":
                source = str(event.payload.get("source"))
                count_rounds[source] = count_rounds.get(source, 0) + 1
        return cls(
            state,
            order=order,
            island_ids={name: stored[name] for name in order},
            homes=homes,
            runners=runners,
            nodes=nodes,
            received=received,
            count_rounds=count_rounds,
        )

    # -- intake ---------------------------------------------------------------------------------

    def _take(self, node: NodeRecord) -> bool:
        home = self._homes.get(node.agent_id)
        if home is None or not node.status.finished:
            return False
        self._own[home].append(node)
        if node.proposal_key:
            self._keys[home].add(node.proposal_key)
        return True

    def notify(self, record: NodeRecord) -> None:
        """A node's result was committed (a `RunState.finished_listeners` callback)."""
        if self._take(record):
            self._wake.set()

    # -- the service ----------------------------------------------------------------------------

    async def run(self, halt: asyncio.Event) -> None:
        """Serve until the run stops taking steps (`state.stop`) or is halted."""
        stop = self.state.stop
        while not (stop.is_set() or halt.is_set()):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S):
                    await self._wake.wait()
            self._wake.clear()
            for name in self.order:
                if stop.is_set() or halt.is_set():
                    return
                await self._maybe_migrate(name)
                await self._maybe_check(name)

    def pool(self, name: str) -> list[NodeRecord]:
        """What island `name` may send: its own finished nodes and the migrants it received."""
        return [*self._own[name], *self._received[name].values()]

    def received(self, name: str) -> list[NodeRecord]:
        return list(self._received[name].values())

    async def _maybe_migrate(self, name: str) -> None:
        rule = self.migration
        if not rule.enabled:
            return
        while islands.rounds_due(len(self._own[name]), rule) > self._count_rounds[name]:
            self._count_rounds[name] += 1
            await self._round(name, "nodes")
        if islands.time_due(time.monotonic() - self._last_round[name], rule):
            await self._round(name, "time")

    async def _round(self, source: str, trigger: str) -> None:
        rule, index = self.migration, self._rounds[source]
        self._rounds[source] += 1
        self._last_round[source] = time.monotonic()
        pool = self.pool(source)
        plan: dict[str, list[NodeRecord]] = {}
        for target in islands.neighbours(self.order, source, rule, index):
            plan[target] = await self._compute(len(pool), self._selector(pool, target, rule.top_k))
        payload = {
            "source": source,
            "round": index,
            "trigger": trigger,
            "n_finished": len(self._own[source]),
            "policy": rule.policy,
            "sent": {t: [r.node_id for r in chosen] for t, chosen in plan.items()},
        }
        await self._send(source, plan, rule.policy, payload, "migration")

    def _selector(self, pool: list[NodeRecord], target: str, k: int) -> Callable[[], Any]:
        received, keys = set(self._received[target]), set(self._keys[target])
        agents = set(self._agents[target])
        return lambda: islands.select_migrants(
            pool,
            k=k,
            maximize=self.state.maximize,
            target_agents=agents,
            received=received,
            target_keys=keys,
        )

    async def _send(
        self,
        source: str,
        plan: dict[str, list[NodeRecord]],
        policy: str,
        payload: dict[str, Any],
        kind: str,
    ) -> list[NodeRecord]:
        """Store the plan's migrations (and the event) in one transaction, then deliver."""
        items = [
            NewMigration(
                node_id=record.node_id,
                source_island_id=self._island_ids[source],
                target_island_id=self._island_ids[target],
                policy=policy,
            )
            for target, chosen in plan.items()
            for record in chosen
        ]
        writer = self.state.writer
        stored = await writer.call(
            writer.archive.add_migrations, self.state.run_id, items, event=payload, event_kind=kind
        )
        by_id = {r.node_id: r for chosen in plan.values() for r in chosen}
        delivered = []
        for row in stored:
            record = by_id[row.node_id]
            self._received[row.target_island][record.node_id] = record
            self._keys[row.target_island].add(record.proposal_key)
            for runner in self._members[row.target_island]:
                runner.receive(record)
            delivered.append(record)
        if stored:
            log.info(
                "islands: %s sent %d node(s) (%s): %s",
                source,
                len(stored),
                policy,
                ", ".join(f"{r.node_id}->{r.target_island}" for r in stored),
            )
        return delivered

    async def _maybe_check(self, name: str) -> None:
        rule = self.collapse
        due = collapse.checks_due(len(self._own[name]), rule)
        if not rule.enabled or due <= self._checks[name]:
            return
        self._checks[name] = due
        own, context = list(self._own[name]), self.pool(name)
        health = await self._compute(
            len(context), lambda: collapse.measure(name, own, rule, context=context)
        )
        if not health.collapsed:
            return
        payload: dict[str, Any] = {**health.as_dict(), "response": rule.response.value}
        log.warning("islands: %s collapsing (%s): %s", name, ", ".join(health.breached), payload)
        if rule.response is collapse.Response.EXPLORE:
            for runner in self._members[name]:
                runner.boost_exploration(rule.explore_steps)
            payload["explore_steps"] = rule.explore_steps
        elif rule.response is collapse.Response.RESEED:
            pools = {n: self.pool(n) for n in self.order}
            donor = islands.best_island(pools, maximize=self.state.maximize, exclude=name)
            if donor is not None:
                chosen = self._selector(pools[donor], name, rule.reseed_k)()
                payload.update(donor=donor, sent=[r.node_id for r in chosen])
                await self._send(donor, {name: chosen}, "reseed", payload, "collapse")
                return
            payload["donor"] = None
        writer = self.state.writer
        await writer.call(writer.archive.add_event, self.state.run_id, "collapse", payload)

    async def _compute(self, size: int, work: Callable[[], _T]) -> _T:
        """Run a pure computation, in a thread when it is big enough to block the loop."""
        if size > _THREAD_ABOVE:
            return await asyncio.to_thread(work)
        return work()
