"""Releasing the jobs of worker incarnations known to be dead: fenced on the incarnation."""

from __future__ import annotations

from workerfleet.worker.connector import Connector
from workerfleet.worker.repository import Repository

LEASE_SECONDS = 30.0


async def _worker(repo: Repository, worker_id: str) -> None:
    await repo.register_worker(worker_id, "mail/emails", ["q"], "emails-abc", "0")


async def _state_of(repo: Repository, worker_id: str) -> str:
    (found,) = [w for w in await repo.list_workers("mail/emails") if w.id == worker_id]
    return found.state


async def test_a_dead_incarnations_jobs_go_back_at_once_and_its_late_outcome_is_fenced(
    repo: Repository,
) -> None:
    await _worker(repo, "emails-abc-1111-old")
    await _worker(repo, "emails-abc-1111-new")
    first, second = [await repo.enqueue("q", "t", max_attempts=3) for _ in range(2)]
    last_chance = await repo.enqueue("q", "t", max_attempts=1)
    held = await repo.claim("emails-abc-1111-old", ["q"], 3, LEASE_SECONDS)
    assert sorted(j.id for j in held) == [first, second, last_chance]
    other = await repo.enqueue("q", "t")
    (kept,) = await repo.claim("emails-abc-1111-new", ["q"], 1, LEASE_SECONDS)
    assert kept.id == other

    result = await repo.release_incarnations([("emails-abc-1111-old", "its container restarted")])

    assert result.worker_ids == ("emails-abc-1111-old",)
    assert (result.workers, result.jobs_released, result.jobs_dead) == (1, 2, 1)
    assert await _state_of(repo, "emails-abc-1111-old") == "dead"
    assert await _state_of(repo, "emails-abc-1111-new") == "online"
    for job_id in (first, second):
        job = await repo.get_job(job_id)
        assert job is not None
        assert (job.state, job.lease_expires_at) == ("pending", None)
        assert job.last_error is not None
        assert "emails-abc-1111-old died (its container restarted)" in job.last_error
    dead = await repo.get_job(last_chance)
    assert dead is not None
    assert dead.state == "dead"
    untouched = await repo.get_job(other)
    assert untouched is not None
    assert untouched.state == "running"
    # Had the verdict been wrong, the worker's own outcome now finds nothing to complete.
    stale = next(j for j in held if j.id == first)
    assert await repo.complete(stale.ref, {"late": True}) is False
    (again,) = [j for j in await repo.claim("emails-abc-1111-new", ["q"], 5, 30) if j.id == first]
    assert again.attempt == 2
    assert await repo.complete(again.ref, None) is True


async def test_releasing_is_idempotent_and_leaves_offline_and_unknown_workers_alone(
    repo: Repository, connector: Connector
) -> None:
    await _worker(repo, "w-draining")
    await _worker(repo, "w-offline")
    job_id = await repo.enqueue("q", "t")
    await repo.claim("w-draining", ["q"], 1, LEASE_SECONDS)
    await repo.set_worker_state("w-draining", "draining")
    await repo.set_worker_state("w-offline", "offline")

    deaths = [("w-draining", "pod gone"), ("w-offline", "pod gone"), ("w-unknown", "pod gone")]
    result = await repo.release_incarnations(deaths)
    assert (result.worker_ids, result.jobs_released) == (("w-draining",), 1)
    assert await _state_of(repo, "w-offline") == "offline"
    again = await repo.release_incarnations(deaths)
    assert (again.workers, again.jobs_released, again.jobs_dead) == (0, 0, 0)
    job = await repo.get_job(job_id)
    assert job is not None
    assert job.state == "pending"
    assert await repo.release_incarnations([]) == type(result)(workers=0, jobs_released=0)
