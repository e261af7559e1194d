"""What importing the operator registers with kopf: each handler on the resource, cause and
field it is meant for, the indexes under the names the handlers read them by, one startup
handler for every kopf setting, and no finalizer anywhere."""

from __future__ import annotations

from typing import Any

import kopf

from workerfleet.operator import handlers, kopf_glue, main, monitor

# Read as plain data: kopf types its registry for registering, not for reading back.
REGISTRY: Any = kopf.get_default_registry()


def resource_of(handler: Any) -> tuple[str | None, str | None, str | None]:
    selector = handler.selector
    return (selector.group, selector.version, selector.any_name)


def test_workerpools_are_reconciled_on_create_resume_and_spec_updates_only() -> None:
    reconciles = [
        h for h in REGISTRY._changing.get_all_handlers() if h.fn is handlers.reconcile_pool
    ]
    assert {(h.reason, h.initial, h.field) for h in reconciles} == {
        (kopf.Reason.CREATE, None, None),
        (kopf.Reason.UPDATE, None, ("spec",)),
        (None, True, None),  # resume: every pool once when the operator starts
    }
    assert {resource_of(h) for h in reconciles} == {kopf_glue.WORKERPOOLS}
    assert len(REGISTRY._changing.get_all_handlers()) == len(reconciles)


def test_no_kopf_timer_or_daemon_runs_per_object_and_nothing_holds_a_finalizer() -> None:
    """Pools, their schedules and Monitors are timed by the operator's one scheduler, so
    kopf spawns nothing per object and never puts its finalizer on one."""
    assert REGISTRY._spawning.get_all_handlers() == []
    # Deleting a pool, a Monitor or their namespace never waits for the operator.
    assert not any(h.requires_finalizer for h in REGISTRY._changing.get_all_handlers())


def test_pools_and_monitors_enter_and_leave_the_scheduler_with_their_watch_events() -> None:
    watching = {h.fn: h for h in REGISTRY._watching.get_all_handlers()}
    assert resource_of(watching[handlers.pool_event]) == kopf_glue.WORKERPOOLS
    assert resource_of(watching[monitor.monitor_event]) == kopf_glue.MONITORS
    assert watching[handlers.pool_event].labels is None  # every pool, whatever its labels


def test_indexes_are_registered_under_the_names_the_handlers_read() -> None:
    indexes = {str(h.id): h for h in REGISTRY._indexing.get_all_handlers()}
    children = {
        handlers.PODS_INDEX: "pods",
        handlers.DEPLOYMENTS_INDEX: "deployments",
        handlers.SERVICES_INDEX: "services",
    }
    assert {handlers.POOL_REFS_INDEX, handlers.MONITOR_REFS_INDEX} <= set(indexes)
    for name, plural in children.items():
        assert resource_of(indexes[name])[2] == plural, name
        assert indexes[name].labels == handlers.MANAGED, name  # only the operator's children
    assert resource_of(indexes["pool_refs"]) == kopf_glue.WORKERPOOLS  # the Monitor's


def test_one_startup_handler_makes_every_kopf_setting() -> None:
    activities = {h.fn: h.activity.value for h in REGISTRY._activities.get_all_handlers()}
    assert activities[main.configure] == "startup"
    assert activities[main.shutdown] == "cleanup"
    startups = [fn for fn, activity in activities.items() if activity == "startup"]
    assert startups == [main.configure]


def test_worker_pod_events_reach_the_incarnation_handler() -> None:
    watching = [
        h for h in REGISTRY._watching.get_all_handlers() if h.fn is handlers.worker_pod_event
    ]
    assert len(watching) == 1
    assert resource_of(watching[0])[2] == "pods"
    assert watching[0].labels == handlers.MANAGED  # only the operator's worker pods
