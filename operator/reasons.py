"""Condition types, reasons, health words, replica reasons and Event reasons, in one place.

Reasons are CamelCase constants because tools match on them; messages are for
people and may change freely.
"""

from __future__ import annotations

# -- condition types -----------------------------------------------------------------------------
AVAILABLE = "Available"
DEGRADED = "Degraded"
QUEUE_REACHABLE = "QueueReachable"
PAUSED = "Paused"
WORKERPOOL_CONDITIONS = (AVAILABLE, DEGRADED, QUEUE_REACHABLE, PAUSED)

# Monitor condition types.
READY = "Ready"

# -- reasons: Available --------------------------------------------------------------------------
WORKERS_READY = "WorkersReady"
SCALED_TO_ZERO = "ScaledToZero"
NO_READY_WORKERS = "NoReadyWorkers"

# -- reasons: Degraded ---------------------------------------------------------------------------
AS_EXPECTED = "AsExpected"
WORKERS_NOT_READY = "WorkersNotReady"
WORKERS_STARTING = "WorkersStarting"
DEPLOYMENT_MISSING = "DeploymentMissing"
QUEUE_UNREACHABLE = "QueueUnreachable"
INVALID_SPEC = "InvalidSpec"
APPLY_FAILED = "ApplyFailed"

# -- reasons: QueueReachable ---------------------------------------------------------------------
CONNECTED = "Connected"
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_KEY_MISSING = "SecretKeyMissing"
SECRET_UNREADABLE = "SecretUnreadable"
INVALID_DSN = "InvalidDSN"
DATABASE_UNREACHABLE = "DatabaseUnreachable"
QUERY_FAILED = "QueryFailed"
QUEUE_SCHEMA_MISSING = "QueueSchemaMissing"
NOT_CHECKED = "NotChecked"

# -- reasons: Paused -----------------------------------------------------------------------------
PAUSED_BY_SPEC = "PausedBySpec"
ACTIVE = "Active"

# -- reasons: Monitor Ready ----------------------------------------------------------------------
RAN = "Ran"
RUN_FAILED = "RunFailed"
NO_POOLS_SELECTED = "NoPoolsSelected"

# -- health words (the STATUS column), most severe first ------------------------------------------
HEALTH_PAUSED = "Paused"
HEALTH_INVALID_SPEC = "InvalidSpec"
HEALTH_QUEUE_UNREACHABLE = "QueueUnreachable"
HEALTH_UNAVAILABLE = "Unavailable"
HEALTH_DEGRADED = "Degraded"
HEALTH_STARTING = "Starting"
HEALTH_SCALED_TO_ZERO = "ScaledToZero"
HEALTH_HEALTHY = "Healthy"
HEALTH_WORDS = (
    HEALTH_PAUSED,
    HEALTH_INVALID_SPEC,
    HEALTH_QUEUE_UNREACHABLE,
    HEALTH_UNAVAILABLE,
    HEALTH_DEGRADED,
    HEALTH_STARTING,
    HEALTH_SCALED_TO_ZERO,
    HEALTH_HEALTHY,
)

# -- reasons of a replica decision (replicas.decide) ---------------------------------------------
REPLICAS_OVERRIDE = "Override"
REPLICAS_MINIMUM = "Minimum"

# -- Event reasons -------------------------------------------------------------------------------
EVENT_AVAILABLE = "Available"
EVENT_UNAVAILABLE = "Unavailable"
EVENT_DEGRADED = "Degraded"
EVENT_RECOVERED = "Recovered"
EVENT_QUEUE_UNREACHABLE = "QueueUnreachable"
EVENT_QUEUE_REACHABLE = "QueueReachable"
EVENT_PAUSED = "Paused"
EVENT_RESUMED = "Resumed"
EVENT_INVALID_SPEC = "InvalidSpec"
EVENT_DEPLOYMENT_CREATED = "DeploymentCreated"
EVENT_DEPLOYMENT_UPDATED = "DeploymentUpdated"
EVENT_DEPLOYMENT_RESTORED = "DeploymentRestored"
EVENT_RECOVERY = "Recovery"
EVENT_MISSED_SCHEDULE = "MissedSchedule"
EVENT_SCHEDULE_CONFLICT = "ScheduleConflict"
