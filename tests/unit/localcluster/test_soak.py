"""The soak's schedule and its account of what the database recorded."""

from __future__ import annotations

import dataclasses

from localcluster.soak import plan as plans
from localcluster.soak import report
from localcluster.soak.report import Findings, Kill, TakenBack, WorkerRow


def test_the_schedule_kills_on_the_beat_and_strikes_each_one_off_fault_once() -> None:
    plan = dataclasses.replace(plans.Plan.short(), seconds=60, kill_every=5)
    faults = plans.schedule(plan)
    kills = [f.at for f in faults if f.kind == plans.KILL]
    assert kills == [5.0 * n for n in range(1, 12)]
    one_offs = {f.kind: f.at for f in faults if f.kind != plans.KILL}
    assert one_offs == {
        plans.HANG: 6.0,
        plans.RESTART_OPERATOR: 18.0,
        plans.RESTART_POSTGRES: 30.0,
        plans.RESTART_APISERVER: 42.0,
    }
    assert [f.at for f in faults] == sorted(f.at for f in faults)


def test_the_short_form_is_the_ci_size() -> None:
    short = plans.Plan.short()
    assert (short.jobs, short.seconds) == (2_000, 60.0)
    assert plans.Plan().jobs == 20_000


def test_a_kill_hits_the_incarnation_registered_last_before_it() -> None:
    rows = [
        WorkerRow("p1-a", "p1", 100.0),
        WorkerRow("p1-b", "p1", 200.0),
        WorkerRow("p2-a", "p2", 150.0),
    ]
    assert report.incarnation_at("p1", 199.0, rows) == "p1-a"
    assert report.incarnation_at("p1", 250.0, rows) == "p1-b"
    assert report.incarnation_at("p1", 50.0, rows) is None


def test_recoveries_are_timed_from_the_kill_and_name_what_took_the_job_back() -> None:
    kill = Kill(at=1000.0, pod="p1", worker_id="p1-a")
    taken = [
        TakenBack(1, "p1-a", 1000.5, "worker p1-a died (its container ended)", 1000.75),
        TakenBack(2, "p1-a", 1015.0, "lease expired on worker p1-a at ...", None),
        TakenBack(3, "p1-a", 990.0, "worker p1-a stopped heartbeating", 991.0),  # before
        TakenBack(4, "other", 1001.0, "worker other died", 1002.0),
    ]
    found = report.recoveries([kill], taken)
    assert [(r.job_id, r.to_pending, r.to_running) for r in found] == [
        (1, 0.5, 0.75),
        (2, 15.0, None),
    ]
    assert found[0].path.startswith("the operator saw")
    assert found[1].path.startswith("its lease expired")
    assert report.path_of("worker w stopped heartbeating (last heartbeat x)").startswith(
        "the Monitor reaped"
    )


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert report.percentile(values, 0.5) == 50.0
    assert report.percentile(values, 0.99) == 99.0
    assert report.percentile([3.0], 0.99) == 3.0


def test_a_lost_job_or_a_second_completion_fails_the_soak() -> None:
    clean = Findings({"succeeded": 10}, 0, {1: 9, 2: 1}, [], [])
    assert (clean.total, clean.lost, clean.ok) == (10, 0, True)
    assert not Findings({"succeeded": 9, "dead": 1}, 0, {1: 10}, [], []).ok
    assert not Findings({"succeeded": 10}, 1, {1: 10}, [], []).ok
    text = report.format_report(clean, started=0.0)
    assert "jobs lost (not succeeded): 0" in text
    assert "handler executions per job: 1x: 9, 2x: 1" in text
    assert text.endswith("result: OK")


def test_the_recovery_form_kills_alone_and_spares_each_pod_its_back_off() -> None:
    plan = plans.Plan.recovery()
    assert {f.kind for f in plans.schedule(plan)} == {plans.KILL}
    # Each pod runs long enough between kills for the node's back-off to start over.
    assert plan.kill_every * plan.workers >= 60
    in_flight = plan.jobs_per_second * plan.job_seconds
    assert in_flight < plan.workers * plan.concurrency / 2  # free slots to run again in
