"""ArchiveContract: the behaviour every archive backend must show, written once.

The `archive` fixture runs each test on an in-memory SQLite database and on a WAL-mode SQLite
file. Tests assert on what the archive returns and records, never on its internals.
"""

from __future__ import annotations

import pytest

from populations.records import (
    ROOT_ID,
    EvalStatus,
    NodeStats,
    NodeStatus,
    Operator,
    Split,
)
from store import (
    AgentRecord,
    Archive,
    DuplicateNodeError,
    NewNode,
    NodeFinishedError,
    RunRecord,
    RunStatus,
    StoreError,
    UnknownNodeError,
    UnknownRunError,
)
from tests.store.builders import failed, key, new_node, ok, proposal

NESTED_CONFIG = {
    "run": {"name": "mad", "seed": 7, "budget": "24h", "max_nodes": None},
    "llm": {"models": ["gpt-x", "claude-y"], "temperature": 0.7, "unicode": "évaluation ✓"},
    "islands": [{"name": "a", "migrate_every": 10}, {"name": "b", "enabled": True}],
}


class TestArchiveContract:
    # ---- runs -------------------------------------------------------------------------------

    def test_run_roundtrip_and_json_config(self, archive: Archive) -> None:
        created = archive.create_run("mad", NESTED_CONFIG, "abc123", 7, 86_400.0, None)
        assert created.config == NESTED_CONFIG
        assert created.status is RunStatus.RUNNING
        assert (created.spent_s, created.max_nodes, created.pid) == (0.0, None, None)
        assert archive.get_run(created.run_id) == created
        assert archive.get_run() == created

    def test_latest_run_and_unknown_run(self, archive: Archive) -> None:
        with pytest.raises(UnknownRunError):
            archive.get_run()
        first = archive.create_run("one", {}, "h", 1, 10.0, None)
        second = archive.create_run("two", {}, "h", 2, 10.0, 5)
        assert archive.get_run().run_id == second.run_id
        assert archive.get_run(first.run_id).name == "one"
        with pytest.raises(UnknownRunError):
            archive.get_run(second.run_id + 1)

    def test_spent_budget_accumulates_and_beats_heartbeat(
        self, archive: Archive, run: RunRecord
    ) -> None:
        after = archive.add_spent(run.run_id, 1.5)
        after = archive.add_spent(run.run_id, 2.0)
        assert after.spent_s == 3.5
        assert after.budget_left_s == run.budget_s - 3.5
        assert after.heartbeat_at is not None and after.heartbeat_at > (run.heartbeat_at or 0)
        assert archive.get_run(run.run_id) == after
        with pytest.raises(ValueError, match="seconds"):
            archive.add_spent(run.run_id, -1.0)
        with pytest.raises(UnknownRunError):
            archive.add_spent(run.run_id + 1, 1.0)

    def test_run_status_and_pid(self, archive: Archive, run: RunRecord) -> None:
        stopped = archive.set_run_status(run.run_id, RunStatus.STOPPED, pid=4242)
        assert (stopped.status, stopped.pid) == (RunStatus.STOPPED, 4242)
        assert archive.get_run(run.run_id).status is RunStatus.STOPPED

    def test_run_limits_change_but_spent_stays(self, archive: Archive, run: RunRecord) -> None:
        archive.add_spent(run.run_id, 10.0)
        changed = archive.set_run_limits(run.run_id, budget_s=7200.0, max_nodes=None)
        assert (changed.budget_s, changed.max_nodes, changed.spent_s) == (7200.0, None, 10.0)
        assert archive.get_run(run.run_id) == changed
        with pytest.raises(ValueError, match="budget_s"):
            archive.set_run_limits(run.run_id, budget_s=0.0, max_nodes=None)

    # ---- islands and agents -----------------------------------------------------------------

    def test_agents_and_islands_are_get_or_create(self, archive: Archive, run: RunRecord) -> None:
        first = archive.add_agent(run.run_id, "a0", "north", "llm:openai", "greedy", {"k": [1]})
        again = archive.add_agent(run.run_id, "a0", "north", "llm:openai", "greedy", {"k": [1]})
        other = archive.add_agent(run.run_id, "a1", None, "random", "mcts", {})
        assert again == first
        assert (first.island, first.kind, first.policy, first.config) == (
            "north",
            "llm:openai",
            "greedy",
            {"k": [1]},
        )
        assert other.island is None and other.island_id is None
        assert archive.agents(run.run_id) == [first, other]
        island = archive.add_island(run.run_id, "north")
        assert island.island_id == first.island_id
        assert archive.add_island(run.run_id, "south").name == "south"
        assert [i.name for i in archive.islands(run.run_id)] == ["north", "south"]

    # ---- nodes ------------------------------------------------------------------------------

    def test_add_nodes_roundtrip(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        buggy = NewNode(
            proposal=proposal("mA X", error="unknown primitive X"),
            proposal_key="mA X",
            status=NodeStatus.FAILED,
        )
        nodes = archive.add_nodes(run.run_id, agent.agent_id, 3, [new_node("mA M"), buggy])
        pending, invalid = nodes
        assert [n.node_id for n in nodes] == sorted(n.node_id for n in nodes)
        assert pending.status is NodeStatus.PENDING and pending.finished_at is None
        assert (pending.run_id, pending.agent_id, pending.step) == (run.run_id, agent.agent_id, 3)
        assert (pending.operator, pending.parent_id, pending.proposal) == (
            Operator.DRAFT,
            None,
            "mA M",
        )
        assert (pending.plan, pending.tokens_in, pending.tokens_out) == ("plan for mA M", 100, 40)
        assert (pending.cost_usd, pending.gpu_s, pending.val_fitness) == (0.002, 0.0, None)
        assert invalid.status is NodeStatus.FAILED and invalid.is_buggy
        assert invalid.error == "unknown primitive X"
        assert invalid.finished_at == invalid.created_at
        assert archive.node(pending.node_id) == pending
        assert archive.nodes(run.run_id) == nodes
        assert archive.add_nodes(run.run_id, agent.agent_id, 4, []) == []

    def test_root_parent_and_lineage(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        (root_child,) = archive.add_nodes(
            run.run_id, agent.agent_id, 0, [new_node("a", parent_id=ROOT_ID)]
        )
        assert root_child.parent_id is None
        (child,) = archive.add_nodes(
            run.run_id, agent.agent_id, 1, [new_node("b", parent_id=root_child.node_id)]
        )
        (grandchild,) = archive.add_nodes(
            run.run_id, agent.agent_id, 2, [new_node("c", parent_id=child.node_id)]
        )
        assert child.operator is Operator.IMPROVE
        assert archive.lineage(grandchild.node_id) == [root_child, child, grandchild]
        assert archive.lineage(root_child.node_id) == [root_child]
        with pytest.raises(UnknownNodeError):
            archive.lineage(grandchild.node_id + 1)
        with pytest.raises(UnknownNodeError):
            archive.node(grandchild.node_id + 1)

    def test_a_step_is_stored_once_and_whole(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node("a"), new_node("b")])
        with pytest.raises(DuplicateNodeError):
            archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node("c")])
        with pytest.raises(StoreError):  # the second item's parent does not exist
            archive.add_nodes(
                run.run_id, agent.agent_id, 1, [new_node("d"), new_node("e", parent_id=999)]
            )
        assert [n.proposal for n in archive.nodes(run.run_id)] == ["a", "b"]

    def test_new_node_must_be_pending_or_failed(self) -> None:
        with pytest.raises(ValueError, match="status"):
            NewNode(proposal=proposal(), proposal_key="k", status=NodeStatus.RUNNING)

    def test_node_filters(self, archive: Archive, run: RunRecord, agent: AgentRecord) -> None:
        other = archive.add_agent(run.run_id, "agent-1", None, "random", "greedy", {})
        a, b = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node("a"), new_node("b")])
        (c,) = archive.add_nodes(run.run_id, other.agent_id, 0, [new_node("c")])
        archive.mark_running([b.node_id])
        archive.finish_node(
            a.node_id, status=NodeStatus.COMPLETE, outcome=ok(a, 0.5), val_fitness=0.5, error=None
        )
        assert [n.node_id for n in archive.nodes(run.run_id, agent_id=other.agent_id)] == [
            c.node_id
        ]
        running = archive.nodes(run.run_id, statuses=[NodeStatus.RUNNING])
        assert [n.node_id for n in running] == [b.node_id]
        assert [n.node_id for n in archive.unfinished_nodes(run.run_id)] == [b.node_id, c.node_id]
        assert archive.status_counts(run.run_id) == {
            "pending": 1,
            "running": 1,
            "complete": 1,
            "failed": 0,
        }

    # ---- running, finishing -----------------------------------------------------------------

    def test_mark_running_heartbeat_and_requeue(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        a, b, c = archive.add_nodes(
            run.run_id, agent.agent_id, 0, [new_node("a"), new_node("b"), new_node("c")]
        )
        archive.mark_running([a.node_id, b.node_id])
        archive.mark_running([a.node_id])  # already running: unchanged, no error
        archive.heartbeat_nodes([a.node_id, c.node_id])
        archive.finish_node(
            b.node_id, status=NodeStatus.FAILED, outcome=failed(b), val_fitness=None, error="t/o"
        )
        with pytest.raises(NodeFinishedError):
            archive.mark_running([c.node_id, b.node_id])
        with pytest.raises(UnknownNodeError):
            archive.mark_running([c.node_id + 100])
        assert archive.node(c.node_id).status is NodeStatus.PENDING  # refused call changed nothing
        assert archive.requeue_stale(run.run_id) == 1
        assert archive.requeue_stale(run.run_id) == 0
        statuses = [n.status for n in archive.nodes(run.run_id)]
        assert statuses == [NodeStatus.PENDING, NodeStatus.FAILED, NodeStatus.PENDING]

    def test_finish_node_roundtrip(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
        archive.mark_running([node.node_id])
        outcome = ok(node, 0.75, duration_s=3.25)
        stats = {ROOT_ID: NodeStats(visits=1, value_sum=0.75), node.node_id: NodeStats(visits=1)}
        done = archive.finish_node(
            node.node_id,
            status=NodeStatus.COMPLETE,
            outcome=outcome,
            val_fitness=0.75,
            error=None,
            stats=stats,
        )
        assert done.status is NodeStatus.COMPLETE and done.is_good
        assert (done.val_fitness, done.gpu_s) == (0.75, 3.25)
        assert done.finished_at is not None and done.finished_at > done.created_at
        assert archive.node(node.node_id) == done
        assert archive.find_evaluation(outcome.key) == outcome
        assert archive.stats(agent.agent_id) == stats

    def test_finish_node_rejects_caller_mistakes(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
        with pytest.raises(ValueError, match="status"):
            archive.finish_node(
                node.node_id, status=NodeStatus.RUNNING, outcome=None, val_fitness=None, error=None
            )
        with pytest.raises(ValueError, match="validation"):
            archive.finish_node(
                node.node_id,
                status=NodeStatus.COMPLETE,
                outcome=ok(node, 1.0, split=Split.TEST),
                val_fitness=1.0,
                error=None,
            )
        with pytest.raises(UnknownNodeError):
            archive.finish_node(
                node.node_id + 1,
                status=NodeStatus.FAILED,
                outcome=None,
                val_fitness=None,
                error="x",
            )
        assert archive.node(node.node_id) == node

    def test_node_and_stats_commit_together(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
        archive.mark_running([node.node_id])
        before = archive.node(node.node_id)
        with pytest.raises(StoreError):  # statistics of an agent that does not exist
            archive.finish_node(
                node.node_id,
                status=NodeStatus.COMPLETE,
                outcome=ok(node, 0.9),
                val_fitness=0.9,
                error=None,
                stats={ROOT_ID: NodeStats(visits=1, value_sum=0.9)},
                agent_id=agent.agent_id + 100,
            )
        assert archive.node(node.node_id) == before
        assert archive.node(node.node_id).status is NodeStatus.RUNNING
        assert archive.find_evaluation(key(node.proposal_key)) is None
        assert archive.stats(agent.agent_id) == {}

    def test_finishing_twice_changes_nothing(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
        stats = {ROOT_ID: NodeStats(visits=1, value_sum=0.5)}
        first = archive.finish_node(
            node.node_id,
            status=NodeStatus.COMPLETE,
            outcome=ok(node, 0.5),
            val_fitness=0.5,
            error=None,
            stats=stats,
        )
        with pytest.raises(NodeFinishedError):
            archive.finish_node(
                node.node_id,
                status=NodeStatus.FAILED,
                outcome=failed(node),
                val_fitness=None,
                error="again",
                stats={ROOT_ID: NodeStats(visits=9, value_sum=9.0)},
            )
        assert archive.node(node.node_id) == first
        assert archive.stats(agent.agent_id) == stats
        assert archive.find_evaluation(key(node.proposal_key)) == ok(node, 0.5)

    def test_stats_are_absolute_upserts(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        a, b = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node("a"), new_node("b")])
        archive.finish_node(
            a.node_id,
            status=NodeStatus.COMPLETE,
            outcome=ok(a, 0.2),
            val_fitness=0.2,
            error=None,
            stats={ROOT_ID: NodeStats(visits=1, value_sum=0.2), a.node_id: NodeStats(visits=1)},
        )
        archive.finish_node(
            b.node_id,
            status=NodeStatus.COMPLETE,
            outcome=ok(b, 0.4),
            val_fitness=0.4,
            error=None,
            stats={ROOT_ID: NodeStats(visits=2, value_sum=0.6)},
        )
        assert archive.stats(agent.agent_id) == {
            ROOT_ID: NodeStats(visits=2, value_sum=0.6),
            a.node_id: NodeStats(visits=1, value_sum=0.0),
        }

    # ---- evaluations ------------------------------------------------------------------------

    def test_same_key_is_evaluated_once(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        a, b = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node("x"), new_node("x")])
        first = ok(a, 0.6, duration_s=4.0)
        archive.finish_node(
            a.node_id, status=NodeStatus.COMPLETE, outcome=first, val_fitness=0.6, error=None
        )
        reused = archive.find_evaluation(first.key)
        assert reused == first
        done = archive.finish_node(
            b.node_id, status=NodeStatus.COMPLETE, outcome=reused, val_fitness=0.6, error=None
        )
        assert done.gpu_s == 0.0
        # An OK result is final: a different outcome under the same key links, never replaces.
        (c,) = archive.add_nodes(run.run_id, agent.agent_id, 1, [new_node("x")])
        archive.finish_node(
            c.node_id, status=NodeStatus.COMPLETE, outcome=ok(c, 0.1), val_fitness=0.1, error=None
        )
        assert archive.find_evaluation(first.key) == first
        assert archive.totals(run.run_id).gpu_s == 4.0

    def test_failed_evaluation_is_not_reused_and_is_overwritten(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        a, b = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node("x"), new_node("x")])
        timed_out = archive.finish_node(
            a.node_id, status=NodeStatus.FAILED, outcome=failed(a), val_fitness=None, error="t/o"
        )
        assert timed_out.is_buggy and timed_out.gpu_s == 30.0
        assert archive.find_evaluation(key("x")) is None
        retry = ok(b, 0.8, duration_s=5.0)
        done = archive.finish_node(
            b.node_id, status=NodeStatus.COMPLETE, outcome=retry, val_fitness=0.8, error=None
        )
        assert done.gpu_s == 5.0
        assert archive.find_evaluation(key("x")) == retry

    def test_record_test_on_a_finished_node(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
        archive.finish_node(
            node.node_id,
            status=NodeStatus.COMPLETE,
            outcome=ok(node, 0.5, duration_s=1.0),
            val_fitness=0.5,
            error=None,
        )
        test_outcome = ok(node, 0.45, duration_s=2.0, split=Split.TEST)
        tested = archive.record_test(node.node_id, test_outcome)
        assert (tested.test_fitness, tested.val_fitness, tested.gpu_s) == (0.45, 0.5, 3.0)
        assert tested.status is NodeStatus.COMPLETE
        assert archive.find_evaluation(test_outcome.key) == test_outcome
        with pytest.raises(ValueError, match="test"):
            archive.record_test(node.node_id, ok(node, 0.5))
        with pytest.raises(UnknownNodeError):
            archive.record_test(node.node_id + 1, test_outcome)

    # ---- analysis ---------------------------------------------------------------------------

    def test_top_is_one_row_per_proposal(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        texts = ["a", "b", "a", "c", "d", "e"]
        nodes = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node(t) for t in texts])
        fitness = [0.5, 0.9, 0.7, 0.9, None, 0.99]
        for node, value in zip(nodes[:5], fitness[:5], strict=True):
            archive.finish_node(
                node.node_id,
                status=NodeStatus.COMPLETE,
                outcome=None,
                val_fitness=value,
                error=None,
            )
        archive.finish_node(  # a failed node never ranks, whatever its fitness
            nodes[5].node_id, status=NodeStatus.FAILED, outcome=None, val_fitness=0.99, error="x"
        )
        best = archive.top(run.run_id, k=10)
        assert [(n.proposal, n.val_fitness) for n in best] == [
            ("b", 0.9),
            ("c", 0.9),
            ("a", 0.7),
        ]
        assert [n.proposal for n in archive.top(run.run_id, k=2)] == ["b", "c"]
        lowest = archive.top(run.run_id, k=2, maximize=False)
        assert [(n.proposal, n.val_fitness) for n in lowest] == [("a", 0.5), ("b", 0.9)]
        assert archive.top(run.run_id, k=0) == []

    def test_totals(self, archive: Archive, run: RunRecord, agent: AgentRecord) -> None:
        assert archive.totals(run.run_id).n_nodes == 0
        a, _ = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node("a"), new_node("b")])
        archive.finish_node(
            a.node_id,
            status=NodeStatus.COMPLETE,
            outcome=ok(a, 0.5, duration_s=1.5),
            val_fitness=0.5,
            error=None,
        )
        totals = archive.totals(run.run_id)
        assert (totals.n_nodes, totals.tokens_in, totals.tokens_out) == (2, 200, 80)
        assert totals.cost_usd == pytest.approx(0.004)
        assert totals.gpu_s == 1.5

    def test_events(self, archive: Archive, run: RunRecord, agent: AgentRecord) -> None:
        (node,) = archive.add_nodes(run.run_id, agent.agent_id, 0, [new_node()])
        archive.add_event(run.run_id, "resume", {"requeued": 0})
        migrated = archive.add_event(
            run.run_id,
            "migrate",
            {"to": "b", "nodes": [node.node_id]},
            agent.agent_id,
            node.node_id,
        )
        archive.add_event(run.run_id, "budget", {"left_s": 10.5})
        assert [e.kind for e in archive.events(run.run_id)] == ["resume", "migrate", "budget"]
        assert archive.events(run.run_id, kind="migrate") == [migrated]
        assert migrated.payload == {"to": "b", "nodes": [node.node_id]}
        assert (migrated.agent_id, migrated.node_id) == (agent.agent_id, node.node_id)
        assert [e.kind for e in archive.events(run.run_id, limit=2)] == ["migrate", "budget"]

    def test_failed_evaluation_outcome_statuses_roundtrip(
        self, archive: Archive, run: RunRecord, agent: AgentRecord
    ) -> None:
        nodes = archive.add_nodes(
            run.run_id, agent.agent_id, 0, [new_node(s.value) for s in EvalStatus]
        )
        for node, status in zip(nodes, EvalStatus, strict=True):
            outcome = ok(node, 0.5) if status is EvalStatus.OK else failed(node, status=status)
            archive.finish_node(
                node.node_id,
                status=NodeStatus.COMPLETE if status is EvalStatus.OK else NodeStatus.FAILED,
                outcome=outcome,
                val_fitness=outcome.score,
                error=outcome.error,
            )
        counts = archive.status_counts(run.run_id)
        assert (counts["complete"], counts["failed"]) == (1, len(EvalStatus) - 1)
