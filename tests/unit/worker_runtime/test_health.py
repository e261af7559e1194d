from __future__ import annotations

import datetime as dt

from workerfleet.worker import health
from workerfleet.worker.models import QueueStats

NOW = dt.datetime(2025, 1, 15, 10, 30, tzinfo=dt.UTC)


def _state(**changes: object) -> health.RuntimeState:
    state = health.RuntimeState(
        worker_id="pod-abc-1234", started_at=NOW, started_monotonic=1000.0, concurrency=4
    )
    state.phase = "running"
    state.last_loop_tick = 1099.0
    state.last_heartbeat_tick = 1099.0
    state.last_heartbeat_ok = 1099.0
    state.listener_connected = True
    state.database_ok(NOW)
    for key, value in changes.items():
        setattr(state, key, value)
    return state


def _context(**changes: object) -> health.ReportContext:
    values: dict[str, object] = {
        "now": NOW,
        "now_monotonic": 1100.0,
        "pool": "emails",
        "queues": ["emails"],
        "version": "1.0.0",
        "config": {"concurrency": 4, "database": "postgresql://app:***@db/jobs"},
        "memory": {"rss": 50 * 1024 * 1024, "vms": 1, "peakRss": 2},
        "environment": {"pythonVersion": "3.11"},
        "poll_interval": 1.0,
        "heartbeat_interval": 5.0,
    }
    values.update(changes)
    return health.ReportContext(**values)  # type: ignore[arg-type]


STATS = QueueStats("emails", 5, 2, 1, 100, 3, 0, 12.5, 40)


def test_liveness_tolerates_a_database_outage_but_not_a_stuck_loop() -> None:
    state = _state()
    state.database_failed(NOW, ConnectionRefusedError("refused"))
    assert health.liveness(state, 1100.0, 1.0, 5.0).ok
    stuck = _state(last_loop_tick=1000.0)
    assert not health.liveness(stuck, 1100.0, 1.0, 5.0).ok
    no_heartbeat = _state(last_heartbeat_tick=1000.0)
    verdict = health.liveness(no_heartbeat, 1100.0, 1.0, 5.0)
    assert not verdict.ok
    assert "heartbeat" in verdict.reason


def test_liveness_while_starting_and_draining() -> None:
    assert health.liveness(_state(phase="starting", last_loop_tick=None), 5000.0, 1, 5).ok
    # The fetch loop has stopped while draining; the heartbeat still has to tick.
    draining = _state(phase="draining", last_loop_tick=1000.0)
    assert health.liveness(draining, 1100.0, 1.0, 5.0).ok


def test_readiness_needs_running_and_a_reachable_database() -> None:
    assert health.readiness(_state()).ok
    assert not health.readiness(_state(phase="draining")).ok
    assert not health.readiness(_state(phase="starting")).ok
    down = _state()
    down.database_failed(NOW, ConnectionRefusedError("refused"))
    verdict = health.readiness(down)
    assert not verdict.ok
    assert "refused" in verdict.reason


def test_a_drain_asked_by_the_operator_makes_the_worker_unready_not_dead() -> None:
    asked = _state(drain_requested=True)
    verdict = health.readiness(asked)
    assert not verdict.ok
    assert "operator" in verdict.reason
    assert health.liveness(asked, 1100.0, 1.0, 5.0).ok


def test_report_has_the_seed_000_shape() -> None:
    state = _state(queue_stats=[STATS], queue_stats_at=NOW)
    state.running[(42, 1)] = health.RunningJob(42, 1, "emails", "send", NOW, 1090.0)
    state.counts.succeeded, state.counts.failed = 40, 2
    code, body = health.build_report(state, _context())
    assert code == 200
    assert body["status"] == "healthy"
    assert body["timestamp"] == "2025-01-15T10:30:00.000Z"
    assert body["uptime"] == 100.0
    worker = body["worker"]
    assert worker["status"] == "running"
    assert worker["isShuttingDown"] is False
    assert worker["currentJob"]["id"] == 42
    assert worker["currentJobs"][0]["runningSeconds"] == 10.0
    assert worker["jobsProcessed"] == 42
    assert worker["memoryUsage"]["rss"] == 50 * 1024 * 1024
    assert worker["config"]["concurrency"] == 4
    assert body["database"] == {
        "connected": True,
        "lastCheck": "2025-01-15T10:30:00.000Z",
        "lastError": None,
    }
    assert {"queue": "emails", "status": "pending", "count": 5} in body["jobs"]["stats"]
    assert {"queue": "emails", "status": "dead", "count": 3} in body["jobs"]["stats"]
    assert body["jobs"]["queues"]["emails"]["oldestPendingSeconds"] == 12.5
    assert body["jobs"]["lastCheck"] == "2025-01-15T10:30:00.000Z"
    assert set(body) >= {"memory", "environment"}


def test_status_levels_and_codes() -> None:
    draining = _state(phase="draining")
    assert health.build_report(draining, _context())[1]["status"] == "degraded"
    assert health.build_report(draining, _context())[0] == 200
    polling_only = _state(listener_connected=False)
    assert health.build_report(polling_only, _context())[1]["status"] == "degraded"
    down = _state()
    down.database_failed(NOW, OSError("connection refused"))
    code, body = health.build_report(down, _context())
    assert (code, body["status"]) == (503, "unhealthy")
    assert body["database"]["connected"] is False
    assert "connection refused" in body["database"]["lastError"]


def test_health_log_fields_flatten_the_report() -> None:
    _, body = health.build_report(_state(queue_stats=[STATS]), _context())
    fields = health.health_log_fields(body)
    assert fields["status"] == "healthy"
    assert fields["memory_rss_mb"] == 50.0
    assert fields["queues"] == {
        "emails": {"pending": 5, "running": 1, "dead": 3, "oldest_pending_seconds": 12.5}
    }


def test_memory_usage_reads_the_process() -> None:
    usage = health.read_memory_usage()
    assert usage["rss"] > 0
    assert usage["peakRss"] > 0
