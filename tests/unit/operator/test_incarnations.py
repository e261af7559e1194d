"""Which worker incarnations a pod's status proves dead, and which pod runs a hung one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from workerfleet.operator import builders, incarnations, models
from workerfleet.operator.incarnations import ContainerLife, PodLife, Verdict
from workerfleet.worker import config as worker_config
from workerfleet.worker.models import WorkerRow

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
UID = "8f14e45f-ceea-467f-a0e6-1bd1b3f0e1a2"
OTHER_UID = "c9f0f895-fb98-4b91-9a3e-0b1c2d3e4f50"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def worker_id(pod: str = "emails-abc", uid: str = UID, nonce: str = "a1b2c3") -> str:
    return worker_config.worker_identity(pod, uid, nonce, "host", 1)


def row(
    worker: str, started: float, state: str = "online", pod: str | None = "emails-abc"
) -> WorkerRow:
    return WorkerRow(
        id=worker,
        pool="mail/emails",
        queues=("emails",),
        pod=pod,
        started_at=at(started),
        heartbeat_at=at(started),
        state=state,
        current_jobs=1,
        jobs_succeeded=0,
        jobs_failed=0,
        version="0.1.0",
    )


def pod(container: ContainerLife | None, gone: bool = False, uid: str = UID) -> PodLife:
    return PodLife(name="emails-abc", uid=uid, container=container, gone=gone)


def running(since: float, restarts: int = 0, ended: float | None = None) -> ContainerLife:
    return ContainerLife(
        restart_count=restarts,
        running_since=at(since),
        last_ended=None if ended is None else at(ended),
        ready=True,
    )


def dead_ids(life: PodLife, rows: list[WorkerRow]) -> list[str]:
    return [v.worker_id for v in incarnations.dead_incarnations(life, rows)]


OLD = worker_id(nonce="000001")
NEW = worker_id(nonce="000002")


# -- reading the pod ----------------------------------------------------------------------------


def status(**container: Any) -> dict[str, Any]:
    return {"containerStatuses": [{"name": "worker", **container}]}


def test_a_restarted_container_reads_as_running_since_its_new_start() -> None:
    life = incarnations.pod_life(
        {"name": "emails-abc", "uid": UID},
        status(
            restartCount=2,
            ready=True,
            state={"running": {"startedAt": "2026-01-01T12:00:10Z"}},
            lastState={"terminated": {"exitCode": 137, "finishedAt": "2026-01-01T12:00:08Z"}},
        ),
    )
    assert life.container == ContainerLife(
        restart_count=2, running_since=at(10), last_ended=at(8), ready=True
    )
    assert life.shows_a_death
    assert not life.gone


def test_a_container_waiting_to_restart_does_not_run_and_ended_at_its_last_exit() -> None:
    life = incarnations.pod_life(
        {"name": "emails-abc", "uid": UID},
        status(
            restartCount=1,
            state={"waiting": {"reason": "CrashLoopBackOff"}},
            lastState={"terminated": {"exitCode": 137, "finishedAt": "2026-01-01T12:00:08Z"}},
        ),
    )
    assert life.container == ContainerLife(restart_count=1, running_since=None, last_ended=at(8))
    assert life.shows_a_death


def test_a_first_run_and_a_pod_without_status_show_no_death() -> None:
    first = incarnations.pod_life(
        {"name": "p", "uid": UID},
        status(restartCount=0, state={"running": {"startedAt": "2026-01-01T12:00:00Z"}}),
    )
    assert not first.shows_a_death
    bare = incarnations.pod_life({"name": "p", "uid": UID}, {})
    assert bare.container is None
    assert not bare.shows_a_death
    assert incarnations.pod_life({"name": "p", "uid": UID}, {}, gone=True).shows_a_death


def test_only_the_worker_container_counts() -> None:
    life = incarnations.pod_life(
        {"name": "p", "uid": UID},
        {"containerStatuses": [{"name": "sidecar", "restartCount": 5}]},
    )
    assert life.container is None


def test_the_id_prefix_is_the_one_workers_give_themselves() -> None:
    life = pod(None)
    assert life.ran(worker_id())
    assert not life.ran(worker_id(uid=OTHER_UID))
    assert not life.ran(worker_id(pod="emails-abcd"))
    assert not PodLife("emails-abc", "").ran(worker_id())  # no uid known: no claim


# -- dead incarnations --------------------------------------------------------------------------


def test_a_killed_worker_is_dead_once_its_successor_registered() -> None:
    rows = [row(OLD, 0), row(NEW, 31)]
    # No clock needed: one container runs one worker, so all but the newest are dead.
    life = pod(running(since=30, restarts=1, ended=29))
    verdicts = incarnations.dead_incarnations(life, rows)
    assert [v.worker_id for v in verdicts] == [OLD]
    assert "newer worker" in verdicts[0].why


def test_a_killed_worker_is_dead_while_its_container_waits_to_restart() -> None:
    life = pod(ContainerLife(restart_count=1, last_ended=at(29)))
    assert dead_ids(life, [row(OLD, 0)]) == [OLD]


def test_a_killed_worker_is_dead_when_its_container_restarted_before_the_new_one_registers() -> (
    None
):
    life = pod(running(since=30, restarts=1, ended=29))
    verdicts = incarnations.dead_incarnations(life, [row(OLD, 0)])
    assert [v.worker_id for v in verdicts] == [OLD]
    assert "restarted" in verdicts[0].why


def test_the_incarnation_running_now_is_never_dead() -> None:
    life = pod(running(since=30, restarts=1, ended=29))
    assert dead_ids(life, [row(NEW, 31)]) == []
    # The database clock a little behind the node's: still not older than the start.
    assert dead_ids(life, [row(NEW, 30 - incarnations.CLOCK_MARGIN_SECONDS + 0.1)]) == []


def test_a_worker_registered_just_before_a_restart_waits_for_a_surer_sign() -> None:
    # Within the clock margin: maybe the new one, maybe the old one; the successor's
    # registration (or the lease) settles it.
    life = pod(running(since=30, restarts=1))
    assert dead_ids(life, [row(OLD, 29)]) == []
    assert dead_ids(life, [row(OLD, 29), row(NEW, 31)]) == [OLD]


def test_a_worker_that_registered_after_the_last_exit_is_not_judged_by_it() -> None:
    # A stale status (the exit) while a new incarnation has already registered.
    life = pod(ContainerLife(restart_count=1, last_ended=at(29)))
    assert dead_ids(life, [row(NEW, 32)]) == []


def test_every_incarnation_of_a_gone_pod_is_dead() -> None:
    life = pod(running(since=0), gone=True)
    verdicts = incarnations.dead_incarnations(life, [row(OLD, 0), row(NEW, 31)])
    assert sorted(v.worker_id for v in verdicts) == sorted([OLD, NEW])
    assert all("gone" in v.why or "newer" in v.why for v in verdicts)


def test_rows_already_dead_offline_or_of_other_pods_are_left_alone() -> None:
    life = pod(ContainerLife(restart_count=1, last_ended=at(29)))
    rows = [
        row(OLD, 0, state="dead"),
        row(worker_id(nonce="000003"), 1, state="offline"),
        row(worker_id(pod="emails-xyz"), 0, pod="emails-xyz"),
        row("host-42-abcdef", 0, pod=None),  # outside Kubernetes
    ]
    assert dead_ids(life, rows) == []


def test_rows_of_an_earlier_pod_of_the_same_name_are_dead() -> None:
    earlier = worker_id(uid=OTHER_UID)
    life = pod(running(since=30))
    verdicts = incarnations.dead_incarnations(life, [row(earlier, 0), row(NEW, 31)])
    assert verdicts == [Verdict(earlier, "pod emails-abc was replaced by another pod")]


# -- hung pods ----------------------------------------------------------------------------------


def test_a_reaped_earlier_incarnation_never_gets_its_pod_deleted() -> None:
    # Finding 1: the container restarted in the same pod, the new worker is healthy; the
    # old row is reaped for its silence later. The pod is not hung.
    life = pod(running(since=30, restarts=1, ended=29))
    rows = [row(OLD, 0, state="dead"), row(NEW, 31)]
    assert incarnations.hung_pods([OLD], [life], rows) == []


def test_a_reaped_incarnation_that_the_pod_runs_now_gets_it_deleted() -> None:
    life = pod(running(since=0))
    rows = [row(OLD, 1, state="dead")]
    assert incarnations.hung_pods([OLD], [life], rows) == [life]


def test_a_pod_is_not_restarted_for_a_worker_of_another_pod_or_a_stopped_container() -> None:
    rows = [row(OLD, 1, state="dead")]
    assert incarnations.hung_pods([OLD], [pod(running(since=0), uid=OTHER_UID)], rows) == []
    waiting = pod(ContainerLife(restart_count=1, last_ended=at(20)))
    assert incarnations.hung_pods([OLD], [waiting], rows) == []
    assert incarnations.hung_pods([OLD], [pod(running(since=0), gone=True)], rows) == []


def test_a_reaped_incarnation_from_before_the_current_start_is_not_hung() -> None:
    # Its successor has not registered yet, but the container restarted after it started.
    life = pod(running(since=30, restarts=1))
    assert incarnations.hung_pods([OLD], [life], [row(OLD, 0, state="dead")]) == []


# -- what the operator remembers ----------------------------------------------------------------


def test_released_workers_are_not_released_again_and_seen_pods_not_looked_at_again() -> None:
    released = incarnations.Released()
    verdicts = [Verdict(OLD, "x"), Verdict(NEW, "y")]
    released.remember([OLD])
    assert released.fresh(verdicts) == [Verdict(NEW, "y")]
    life = pod(ContainerLife(restart_count=1, last_ended=at(29)))
    assert not released.seen(life)
    released.saw(life)
    assert released.seen(life)
    # The new worker turning ready is a new look (it may settle an open question).
    assert not released.seen(pod(running(since=30, restarts=1, ended=29)))
    released.saw(pod(None, gone=True))
    assert not released.seen(life)


def test_remembered_releases_are_bounded() -> None:
    released = incarnations.Released()
    released.remember(f"w{i}" for i in range(incarnations.REMEMBERED_RELEASES + 5))
    assert len(released.workers) == incarnations.REMEMBERED_RELEASES
    assert "w0" not in released.workers


def test_the_database_secret_is_read_from_the_pod_the_builder_made() -> None:
    spec = models.WorkerPoolSpec.model_validate(
        {
            "image": "w:1",
            "queue": "emails",
            "database": {"secretRef": {"name": "queue-db", "key": "url"}},
            "worker": {"handlers": "acme.jobs"},
        }
    )
    template = builders.pod_template(spec, builders.Owner("emails", "mail", "uid-1"))
    assert incarnations.database_ref(template["spec"]) == ("queue-db", "url")
    assert incarnations.database_ref({"containers": [{"name": "other"}]}) is None
