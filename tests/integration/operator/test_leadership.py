"""Leader election against the real API server: the Lease store's optimistic concurrency
(a stale write is refused), one of two candidates leads, and a release hands over at once.
The SIGKILL case, with the operator as pods of the chart, is in tests/e2e/test_operator_ha.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client, config

from localcluster.control_plane import LocalCluster
from workerfleet.operator.leadership import ApiLeaseStore, Conflict, Leadership
from workerfleet.operator.lease import LeaseRecord, Timing, claim, micro_time

pytestmark = pytest.mark.cluster

TIMING = Timing(lease_duration=8, renew_deadline=5, retry_period=0.2)
LEASE = "workerfleet-operator"


@pytest.fixture
def api(kube_cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api_client: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kube_cluster.kubeconfig)
    )
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


def store(api: client.ApiClient, namespace: str) -> ApiLeaseStore:
    return ApiLeaseStore(api, namespace, LEASE, timeout_seconds=5)


async def test_a_stale_write_is_refused(api: client.ApiClient, namespace: str) -> None:
    lease = store(api, namespace)
    assert await lease.read() == LeaseRecord.absent()
    now = datetime.now(UTC)
    created = await lease.write(LeaseRecord.absent(), claim(LeaseRecord.absent(), "a", 8, now))
    assert created.holder == "a"
    assert created.renew_time == micro_time(now)
    with pytest.raises(Conflict):  # created meanwhile
        await lease.write(LeaseRecord.absent(), claim(LeaseRecord.absent(), "b", 8, now))
    renewed = await lease.write(created, claim(created, "a", 8, now + timedelta(seconds=1)))
    assert renewed.resource_version != created.resource_version
    with pytest.raises(Conflict):  # written since it was read
        await lease.write(created, claim(created, "b", 8, now))
    assert (await lease.read()).resource_version == renewed.resource_version


async def test_one_candidate_leads_and_a_release_hands_over_at_once(
    api: client.ApiClient, namespace: str
) -> None:
    first = Leadership(store(api, namespace), "pod-a_1", TIMING)
    second = Leadership(store(api, namespace), "pod-b_2", TIMING)
    stop = asyncio.Event()
    assert await first.acquire(stop)
    waiting = asyncio.create_task(second.acquire(stop))
    lost: list[str] = []
    holding = asyncio.create_task(first.hold(lost.append))
    await asyncio.sleep(1.0)  # five renewals, five refused attempts
    assert not waiting.done()
    assert (await store(api, namespace).read()).holder == "pod-a_1"
    holding.cancel()
    await first.release()
    assert await asyncio.wait_for(waiting, timeout=TIMING.retry_period * 10)
    record = await store(api, namespace).read()
    assert (record.holder, record.transitions) == ("pod-b_2", 0)
    assert lost == []
