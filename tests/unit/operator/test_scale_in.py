"""Choosing scale-in victims so the ReplicaSet deletes exactly drained, idle pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workerfleet.operator import scale_in
from workerfleet.operator.scale_in import BUSY_COST, NEUTRAL_COST, VICTIM_COST, InFlight
from workerfleet.operator.views import PodView
from workerfleet.worker.models import PoolWorker

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pod(
    name: str,
    *,
    ready: bool = True,
    phase: str = "Running",
    node: str | None = "node-1",
    age: int = 100,
    deleting: bool = False,
    template: str = "abc",
) -> PodView:
    return PodView(
        name=name,
        ready=ready,
        restarts=0,
        created_at=T0 - timedelta(seconds=age),
        deleting=deleting,
        phase=phase,
        node_name=node,
        template_hash=template,
    )


def worker(name: str, jobs: int = 0, asked: bool = False) -> PoolWorker:
    return PoolWorker(f"{name}-w", name, "draining" if asked else "online", jobs, asked)


def names(plan: scale_in.Plan) -> list[str]:
    return [v.pod.name for v in plan.victims]


def test_idle_workers_go_busy_ones_stay_with_the_highest_cost() -> None:
    pods = [pod("a"), pod("b"), pod("c"), pod("d")]
    workers = [worker("a", jobs=1), worker("b"), worker("c", jobs=2), worker("d")]
    plan = scale_in.plan(pods, workers, 2)
    assert sorted(names(plan)) == ["b", "d"]
    assert plan.held == 0
    assert plan.costs == {"a": BUSY_COST, "b": VICTIM_COST, "c": BUSY_COST, "d": VICTIM_COST}
    assert sorted(plan.worker_ids) == ["b-w", "d-w"]


def test_never_more_than_the_idle_workers() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    plan = scale_in.plan(pods, [worker("a", 1), worker("b"), worker("c", 1)], 2)
    assert names(plan) == ["b"]
    assert plan.held == 1
    assert plan.why_held is not None
    assert "holds 1 jobs" in plan.why_held


def test_an_unready_busy_pod_goes_first_whatever_its_cost_so_nothing_goes() -> None:
    # The ReplicaSet deletes not-ready pods before ready ones; the cost cannot change that.
    pods = [pod("sick", ready=False), pod("b"), pod("c")]
    plan = scale_in.plan(pods, [worker("sick", jobs=3), worker("b"), worker("c")], 1)
    assert plan.victims == ()
    assert plan.why_held is not None
    assert "sick (not ready)" in plan.why_held


def test_unready_idle_pods_are_taken_first_then_ready_ones() -> None:
    pods = [pod("ready-1"), pod("slow", ready=False), pod("ready-2")]
    plan = scale_in.plan(pods, [worker("ready-1"), worker("slow"), worker("ready-2")], 2)
    assert names(plan)[0] == "slow"
    assert len(plan.victims) == 2


def test_a_pod_that_never_started_goes_first_without_a_drain() -> None:
    pods = [pod("a"), pod("pending", phase="Pending", node=None)]
    plan = scale_in.plan(pods, [worker("a")], 1)
    assert names(plan) == ["pending"]
    assert plan.worker_ids == []


def test_a_running_pod_without_a_worker_row_is_kept_and_blocks_its_rank() -> None:
    pods = [pod("starting", ready=False), pod("b")]
    plan = scale_in.plan(pods, [worker("b")], 1)
    assert plan.victims == ()
    assert plan.why_held is not None
    assert "no live worker row" in plan.why_held


def test_already_drained_workers_are_preferred_then_the_newest() -> None:
    pods = [pod("old", age=500), pod("new", age=10), pod("drained", age=300)]
    workers = [worker("old"), worker("new"), worker("drained", asked=True)]
    assert names(scale_in.plan(pods, workers, 2)) == ["drained", "new"]


def test_pods_already_going_are_not_counted() -> None:
    pods = [pod("gone", deleting=True), pod("failed", phase="Failed", ready=False), pod("b"),
            pod("c")]  # fmt: skip
    plan = scale_in.plan(pods, [worker("gone"), worker("b"), worker("c")], 1)
    assert len(plan.victims) == 1
    assert "gone" not in plan.costs
    assert "failed" not in plan.costs


def test_only_drained_pods_are_taken_when_the_plan_is_redone() -> None:
    # A victim claimed a job in the race: it stays; an idle pod not drained is not taken.
    pods = [pod("a"), pod("b"), pod("c")]
    workers = [worker("a", jobs=1, asked=True), worker("b", asked=True), worker("c")]
    plan = scale_in.plan(pods, workers, 2, takeable={"a", "b"})
    assert names(plan) == ["b"]
    assert plan.held == 1
    assert plan.costs["c"] == NEUTRAL_COST


def test_nothing_is_taken_during_a_rollout() -> None:
    pods = [pod("a", template="old"), pod("b", template="new")]
    plan = scale_in.plan(pods, [worker("a"), worker("b")], 1)
    assert (plan.victims, plan.why_held) == ((), "a rollout is in progress")


def test_settle_counts_victims_gone_and_busy_pods_interrupted() -> None:
    in_flight = InFlight(victims={"v1": ("v1-w",), "v2": ("v2-w",)}, busy={"b": 2}, deadline=50.0)
    first = scale_in.settle(in_flight, [pod("v2"), pod("b"), pod("v1", deleting=True)], 10.0)
    assert (first.completed, first.interrupted_jobs, first.done) == (["v1"], 0, False)
    again = scale_in.settle(in_flight, [pod("v2"), pod("b")], 11.0)
    assert again.completed == []  # counted once
    late = scale_in.settle(in_flight, [pod("v2")], 60.0)
    assert (late.interrupted_jobs, late.interrupted_pods) == (2, ["b"])
    assert late.overdue == {"v2": ("v2-w",)}
    assert late.done


def test_settle_is_done_when_every_victim_went() -> None:
    in_flight = InFlight(victims={"v": ("v-w",)}, busy={}, deadline=50.0)
    assert scale_in.settle(in_flight, [], 1.0).done
