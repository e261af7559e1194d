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
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"
WORKERPOOL_CONDITIONS = (
    AVAILABLE,
    DEGRADED,
    QUEUE_REACHABLE,
    PAUSED,
    SCALING_ACTIVE,
    SCALING_LIMITED,
)

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

# -- reasons: ScalingActive (in the HPA's spirit) --------------------------------------------------
QUEUE_READ = "QueueRead"
JOBS_PER_WORKER_BELOW_CONCURRENCY = "JobsPerWorkerBelowConcurrency"
QUEUE_UNREADABLE = "QueueUnreadable"
OVERRIDDEN = "Overridden"
NOT_SCALING = "NotScaling"

# -- reasons: ScalingLimited (what bound the queue's recommendation) ------------------------------
LIMIT_TOO_FEW = "TooFewReplicas"
LIMIT_TOO_MANY = "TooManyReplicas"
LIMIT_SCALE_UP = "ScaleUpLimit"
LIMIT_BUSY_WORKERS = "BusyWorkers"
LIMIT_SCALE_IN = "ScaleInLimit"
DESIRED_WITHIN_RANGE = "DesiredWithinRange"

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

# -- reasons of a replica decision (scaling.decide) ----------------------------------------------
REPLICAS_OVERRIDE = "Override"
REPLICAS_MINIMUM = "Minimum"
SCALE_QUEUE_DEPTH = "QueueDepth"
SCALE_MAXIMUM = "Maximum"
SCALE_UP_LIMITED = "ScaleUpLimited"
SCALE_DOWN_DELAYED = "ScaleDownDelayed"
SCALE_BUSY_WORKERS = "BusyWorkers"
SCALE_BELOW_ACTIVATION = "BelowActivation"
SCALE_FALLBACK = "QueueUnreadable"
SCALE_IN_HELD = "ScaleInHeld"
"""The scale-in procedure kept more workers than decided (see scale_in.py)."""

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
EVENT_SCALED = "Scaled"
EVENT_DRAIN_TIMED_OUT = "DrainTimedOut"

# -- the Monitor's NotificationsDelivered condition ---------------------------------------------
NOTIFICATIONS_DELIVERED = "NotificationsDelivered"
NO_WEBHOOK = "NoWebhook"
WEBHOOK_READY = "WebhookReady"
DELIVERED = "Delivered"
DELIVERY_FAILED = "DeliveryFailed"
WEBHOOK_SECRET_NOT_FOUND = "WebhookSecretNotFound"
WEBHOOK_SECRET_KEY_MISSING = "WebhookSecretKeyMissing"
WEBHOOK_SECRET_UNREADABLE = "WebhookSecretUnreadable"
WEBHOOK_URL_INVALID = "WebhookURLInvalid"

# -- incident Events ------------------------------------------------------------------------------
EVENT_INCIDENT_FIRING = "IncidentFiring"
EVENT_INCIDENT_RESOLVED = "IncidentResolved"
EVENT_MISSED_SCHEDULE = "MissedSchedule"
EVENT_SCHEDULE_CONFLICT = "ScheduleConflict"
