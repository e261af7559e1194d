"""The WorkerPool and Monitor APIs: one pydantic model per object, defaults in one place.

These models are the single source of truth for the API. ``make crds`` turns
them into the CRD schemas in ``crds/`` (defaults, bounds, enums, patterns and
the CEL rules below), so the API server refuses a bad spec before the operator
sees it; the operator parses the same spec with the same models, so both agree
on what is valid. Field docstrings become the schema descriptions that
``kubectl explain`` prints.

Cross-field rules are written twice on purpose: as CEL for the API server and
as a Python predicate for the operator (and for unit tests); ``Rule`` keeps the
pair, with its message, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from workerfleet.durations import DURATION_PATTERN, format_duration, parse_duration
from workerfleet.operator import reasons
from workerfleet.worker import config as worker_config
from workerfleet.worker import cron as crontab
from workerfleet.worker import retry
from workerfleet.worker.models import (
    INT4_MAX,
    INT4_MIN,
    QUEUE_NAME_PATTERN,
    TASK_NAME_MAX_CHARS,
    InvalidJobError,
    validate_starting_deadline,
)

GROUP = "workerfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
WORKERPOOL_KIND = "WorkerPool"
WORKERPOOL_PLURAL = "workerpools"
MONITOR_KIND = "Monitor"
MONITOR_PLURAL = "monitors"

MAX_REPLICAS = 1000
MAX_ATTEMPTS = 1000
MAX_NAME_LENGTH = 253
MAX_ENV_VARS = 100
MAX_STRING_LENGTH = 4096
MAX_LIST_ITEMS = 200
MAX_INCIDENTS = 100
HANDLERS_PATTERN = r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*|command:.*\S.*)$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
# Kubernetes' own quantity grammar (resource.Quantity), as in the core API's schema.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
PERCENT_STEP_PATTERN = r"^[1-9][0-9]{0,3}%$"
MAX_SCHEDULES = 50
SCHEDULE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

# The worker's variables, set by the operator from the spec; a user's env entry may not
# shadow them.
RESERVED_ENV_PREFIX = worker_config.ENV_PREFIX
RESERVED_ENV_NAMES = worker_config.UNPREFIXED_VARIABLES


# -- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the API server, a predicate for the operator."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def as_validation(self) -> dict[str, str]:
        validation = {"rule": self.cel, "message": self.message}
        if self.field_path is not None:
            validation["fieldPath"] = self.field_path
        return validation


def _schema_extra(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.as_validation() for rule in rules]


# A pool's name becomes label values and the Service name <pool>-metrics (a DNS-1035 label).
POOL_NAME_MAX_LENGTH = 55
POOL_NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,53}[a-z0-9])?$"
POOL_NAME_RULE = Rule(
    f"self.metadata.name.matches('{POOL_NAME_PATTERN}')",
    f"metadata.name of a WorkerPool must be at most {POOL_NAME_MAX_LENGTH} lower-case letters, "
    "digits and '-', starting with a letter (it names the <name>-metrics Service)",
    lambda name: re.fullmatch(POOL_NAME_PATTERN, name) is not None,
)


class ApiModel(BaseModel):
    """A part of a spec: camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        json_schema_extra=_schema_extra,
    )
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in type(self).cel_rules:
            if not rule.check(self):
                raise ValueError(rule.message)
        return self


class StatusModel(BaseModel):
    """A part of a status: written by the operator, tolerant when reading old fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=True,
    )


ModelT = TypeVar("ModelT", bound=BaseModel)


def nested(model: type[ModelT]) -> Any:
    """A sub-object that defaults to its own defaults, on the server as here.

    The schema default is the complete default object (not ``{}``): the API
    server checks a default against the CEL rules as written, before the
    nested defaults would fill it in.
    """
    default = model().model_dump(by_alias=True, exclude_none=True, mode="json")
    return Field(default_factory=model, json_schema_extra={"default": default})


Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
IntOrPercent = Annotated[
    int | str,
    WithJsonSchema(
        {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    ),
]
PreservedObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def _seconds(duration: str | None) -> float | None:
    return None if duration is None else parse_duration(duration)


# -- WorkerPool spec -----------------------------------------------------------------------------


class SecretKeyRef(ApiModel):
    """A key of a Secret in the pool's namespace."""

    name: Name
    """Name of the Secret."""
    key: Name = "dsn"
    """Key in the Secret's data."""


class Database(ApiModel):
    """Where the queue lives."""

    secret_ref: SecretKeyRef
    """The Secret key holding the PostgreSQL URL (postgresql://user:password@host:5432/db)."""


class Replicas(ApiModel):
    """How few and how many workers the pool runs.

    `kubectl scale workerpool NAME --replicas=N` sets `override`: the pool is
    held at exactly N workers and autoscaling is suspended until `override` is
    removed (kubectl patch workerpool NAME --type=merge
    -p '{"spec":{"replicas":{"override":null}}}'). A person scaling a pool by
    hand during an incident wins over the autoscaler instead of fighting it,
    and min/max keep their meaning as the autoscaler's bounds.
    """

    cel_rules = (
        Rule(
            "self.min <= self.max",
            "replicas.min must be less than or equal to replicas.max",
            lambda r: r.min <= r.max,
            ".min",
        ),
        Rule(
            "!has(self.override) || self.override <= self.max",
            "replicas.override must be less than or equal to replicas.max",
            lambda r: r.override is None or r.override <= r.max,
            ".override",
        ),
    )

    min: int = Field(1, ge=0, le=MAX_REPLICAS)
    """Fewest workers (0 lets an idle pool scale to zero)."""
    max: int = Field(10, ge=1, le=MAX_REPLICAS)
    """Most workers."""
    override: int | None = Field(None, ge=0, le=MAX_REPLICAS)
    """Manual replica count set by `kubectl scale`; suspends autoscaling while set."""


class Scaling(ApiModel):
    """How the pool is sized from the queue depth."""

    cel_rules = (
        Rule(
            "type(self.maxScaleUpStep) == int ? self.maxScaleUpStep >= 1 : "
            f"self.maxScaleUpStep.matches('{PERCENT_STEP_PATTERN}')",
            "scaling.maxScaleUpStep must be a positive number of workers or a percentage "
            "such as '50%'",
            lambda s: (
                s.max_scale_up_step >= 1
                if isinstance(s.max_scale_up_step, int)
                else _matches(PERCENT_STEP_PATTERN, s.max_scale_up_step)
            ),
            ".maxScaleUpStep",
        ),
    )

    jobs_per_worker: int = Field(10, ge=1, le=1_000_000)
    """Target number of (pending + running) jobs per worker."""
    activation_jobs: int = Field(1, ge=1, le=1_000_000)
    """Queue depth at which a pool scaled to zero wakes up."""
    poll_interval: Duration = "5s"
    """How often the queue depth is read."""
    scale_down_delay: Duration = "120s"
    """How long lower recommendations must persist before the pool shrinks."""
    max_scale_up_step: IntOrPercent = 10
    """Most workers added at once: a number, or a percentage of the current size ('50%')."""
    fallback_replicas: int = Field(1, ge=0, le=MAX_REPLICAS)
    """Floor held while the queue cannot be read."""

    @property
    def poll_interval_seconds(self) -> float:
        return parse_duration(self.poll_interval)

    @property
    def scale_down_delay_seconds(self) -> float:
        return parse_duration(self.scale_down_delay)


# spec.worker holds the worker's own settings (worker/config.py), under the same names but
# this one; the defaults are the worker's, durations spelled as the API spells them.
WORKER_SETTING_OF = {"shutdown_grace_period": "shutdown_grace"}


def _worker_default(field: str) -> Any:
    return worker_config.default_of(WORKER_SETTING_OF.get(field, field))


def _worker_duration(field: str) -> str:
    return format_duration(_worker_default(field))


class WorkerSettings(ApiModel):
    """The worker runtime's settings, passed to every worker as WORKERFLEET_* variables."""

    concurrency: int = Field(_worker_default("concurrency"), ge=1, le=worker_config.MAX_CONCURRENCY)
    """Jobs one worker runs at the same time."""
    handlers: str = Field(pattern=HANDLERS_PATTERN, min_length=1, max_length=MAX_STRING_LENGTH)
    """A Python module of task functions (acme.jobs), or 'command:<program and args>'."""
    poll_interval: Duration = _worker_duration("poll_interval")
    """Polling fallback when no NOTIFY arrives."""
    heartbeat_interval: Duration = _worker_duration("heartbeat_interval")
    """How often a worker refreshes its row and its jobs' leases."""
    lease_duration: Duration | None = _worker_default("lease_duration")
    """How long a job stays leased without a heartbeat (default: 3 heartbeat intervals)."""
    job_timeout: Duration = _worker_duration("job_timeout")
    """Longest a single job may run."""
    max_attempts: int = Field(_worker_default("max_attempts"), ge=1, le=MAX_ATTEMPTS)
    """Attempts before a failing job is dead-lettered, for jobs enqueued without \
max_attempts of their own: the first worker to claim such a job gives it this value, which \
stays with the job. A job enqueued with max_attempts keeps its own."""
    retry_base: Duration = _worker_duration("retry_base")
    """First retry delay; doubles per attempt."""
    retry_cap: Duration = _worker_duration("retry_cap")
    """Longest retry delay."""
    retry_jitter: retry.Jitter = _worker_default("retry_jitter")
    """Jitter applied to retry delays."""
    shutdown_grace_period: Duration = _worker_duration("shutdown_grace_period")
    """How long running jobs may finish after SIGTERM before they are released."""
    log_level: worker_config.LogLevel = _worker_default("log_level")
    """Worker log level."""
    log_format: worker_config.LogFormat = _worker_default("log_format")
    """Worker log format."""
    health_log_interval: Duration = _worker_duration("health_log_interval")
    """How often a worker logs its health report."""
    migrate: bool = _worker_default("migrate")
    """Whether workers apply the queue schema migrations at start."""

    def by_worker_setting(self) -> dict[str, Any]:
        """These settings keyed by the worker's own field names (worker/config.py)."""
        return {
            WORKER_SETTING_OF.get(name, name): getattr(self, name)
            for name in type(self).model_fields
        }

    @property
    def heartbeat_seconds(self) -> float:
        return parse_duration(self.heartbeat_interval)

    @property
    def lease_seconds(self) -> float:
        explicit = _seconds(self.lease_duration)
        if explicit is not None:
            return explicit
        return self.heartbeat_seconds * worker_config.LEASE_HEARTBEATS

    @property
    def shutdown_grace_seconds(self) -> float:
        return parse_duration(self.shutdown_grace_period)

    @property
    def retry_base_seconds(self) -> float:
        return parse_duration(self.retry_base)

    @property
    def retry_cap_seconds(self) -> float:
        return parse_duration(self.retry_cap)


class KeySelector(ApiModel):
    """A key of a Secret or ConfigMap."""

    name: Name
    """Name of the Secret or ConfigMap, in the pool's namespace."""
    key: Name
    """Key in its data."""
    optional: bool | None = None
    """Start the worker even when the Secret, ConfigMap or key does not exist."""


class FieldRef(ApiModel):
    """A field of the pod (downward API)."""

    field_path: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    """The pod field, such as metadata.namespace or spec.nodeName."""
    api_version: str | None = Field(None, max_length=64)
    """Version of the schema field_path is written in (default v1)."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from."""

    cel_rules = (
        Rule(
            "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef)]"
            ".filter(x, x).size() == 1",
            "valueFrom must set exactly one of secretKeyRef, configMapKeyRef, fieldRef",
            lambda s: [s.secret_key_ref, s.config_map_key_ref, s.field_ref].count(None) == 2,
        ),
    )

    secret_key_ref: KeySelector | None = None
    """The value of a Secret's key."""
    config_map_key_ref: KeySelector | None = None
    """The value of a ConfigMap's key."""
    field_ref: FieldRef | None = None
    """A field of the worker's pod."""


class EnvVar(ApiModel):
    """An extra environment variable for the worker container."""

    cel_rules = (
        Rule(
            f"!self.name.startsWith('{RESERVED_ENV_PREFIX}') && "
            f"!(self.name in {list(RESERVED_ENV_NAMES)!r})",
            f"env names starting with {RESERVED_ENV_PREFIX} and "
            f"{', '.join(RESERVED_ENV_NAMES)} are set by the operator: use spec.worker, "
            "spec.queue and spec.database instead",
            lambda e: (
                not e.name.startswith(RESERVED_ENV_PREFIX) and e.name not in RESERVED_ENV_NAMES
            ),
            ".name",
        ),
        Rule(
            "!(has(self.value) && has(self.valueFrom))",
            "env entries set either value or valueFrom, not both",
            lambda e: not (e.value is not None and e.value_from is not None),
        ),
    )

    name: str = Field(pattern=ENV_NAME_PATTERN, min_length=1, max_length=256)
    """Variable name (not WORKERFLEET_*, POD_NAME, POD_UID or POD_IP: the operator sets those)."""
    value: str | None = Field(None, max_length=MAX_STRING_LENGTH)
    """Literal value."""
    value_from: EnvVarSource | None = None
    """Where the value comes from instead of `value`."""


class Resources(ApiModel):
    """Compute resources of each worker container."""

    requests: dict[str, Quantity] = Field(default={"cpu": "50m", "memory": "64Mi"})
    """Requested resources (cpu, memory, ...)."""
    limits: dict[str, Quantity] = Field(default={"memory": "512Mi"})
    """Resource limits (cpu, memory, ...)."""


class TemplateMetadata(ApiModel):
    """Labels and annotations added to every worker pod."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Extra pod labels (the pool's selector labels always win)."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Extra pod annotations."""


class PodTemplateOverrides(ApiModel):
    """A partial pod template merged over the generated one.

    Maps merge key by key; lists of named items (containers, env, volumes,
    volumeMounts, ...) merge by name, the worker container being named
    `worker`; other values replace the generated ones. The pool's selector
    labels cannot be overridden.
    """

    metadata: TemplateMetadata = nested(TemplateMetadata)
    spec: PreservedObject = Field(default_factory=dict)
    """Pod spec fields (nodeSelector, tolerations, affinity, serviceAccountName, ...)."""


class Metrics(ApiModel):
    """The metrics Service in front of the workers' /metrics."""

    service: bool = True
    """Create a ClusterIP Service named <pool>-metrics for Prometheus to scrape."""


class Schedule(ApiModel):
    """A job enqueued on the pool's queue at every time a cron expression names.

    The operator enqueues each run once (a run is keyed by pool, schedule name
    and scheduled time in the database, so a restart, a second operator or a
    clock step never enqueues it twice), within a second of its time. Runs
    missed while no operator ran are handled like a CronJob's: the latest one
    is enqueued when it is still within `startingDeadline`, the others are
    skipped and counted (status.schedules[].missedRuns, and a MissedSchedule
    Event). spec.paused leaves the schedules running; `suspend` stops one.
    """

    cel_rules = (
        Rule(
            f"self.cron.matches('{crontab.CRON_SHAPE_PATTERN}')",
            "cron must be five fields (minute hour day-of-month month day-of-week, such as "
            f"'*/5 * * * *') or one of {', '.join(crontab.MACROS)}",
            lambda s: _matches(crontab.CRON_SHAPE_PATTERN, s.cron),
            ".cron",
        ),
        Rule(
            f"self.timeZone.matches('{crontab.TIME_ZONE_PATTERN}')",
            "timeZone must be an IANA time zone name, such as UTC or Europe/Riga",
            lambda s: _matches(crontab.TIME_ZONE_PATTERN, s.time_zone),
            ".timeZone",
        ),
    )

    name: str = Field(pattern=SCHEDULE_NAME_PATTERN, max_length=63)
    """Names the schedule in status and in the database (lower-case letters, digits, '-')."""
    cron: str = Field(min_length=1, max_length=crontab.CRON_MAX_LENGTH)
    """When to run: five cron fields (minute hour day-of-month month day-of-week, such as \
'*/5 * * * *' or '0 9 * * MON-FRI') or a macro (@hourly, @daily, @weekly, @monthly, @yearly)."""
    time_zone: str = Field(
        crontab.DEFAULT_TIME_ZONE, min_length=1, max_length=crontab.TIME_ZONE_MAX_LENGTH
    )
    """IANA time zone the cron fields are read in (such as Europe/Riga)."""
    task: str = Field(min_length=1, max_length=TASK_NAME_MAX_CHARS)
    """The task (handler name) each run enqueues."""
    payload: PreservedObject | None = None
    """The JSON object each run's job carries (default: none)."""
    priority: int = Field(0, ge=INT4_MIN, le=INT4_MAX)
    """Priority of each run's job (higher runs first)."""
    max_attempts: int | None = Field(None, ge=1, le=MAX_ATTEMPTS)
    """Attempts of each run's job (default: the pool's spec.worker.maxAttempts)."""
    starting_deadline: Duration | None = None
    """How late a missed run may still be enqueued (when the operator was not running at its \
time), at least 10s; older missed runs are skipped and counted. Unset: the latest missed run \
is always enqueued, once."""
    suspend: bool = False
    """Enqueue no runs while true; runs that fall meanwhile are neither enqueued nor missed."""

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        try:
            crontab.parse(value)
        except crontab.CronError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone_exists(cls, value: str) -> str:
        try:
            crontab.time_zone(value)
        except crontab.CronError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("starting_deadline")
    @classmethod
    def _deadline_long_enough(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_starting_deadline(parse_duration(value))
            except InvalidJobError as error:
                raise ValueError(str(error).split(": ", 1)[1]) from None
        return value

    @property
    def starting_deadline_seconds(self) -> float | None:
        return _seconds(self.starting_deadline)


class WorkerPoolSpec(ApiModel):
    """A fleet of workers draining one queue."""

    cel_rules = (
        Rule(
            "self.scaling.fallbackReplicas <= self.replicas.max",
            "scaling.fallbackReplicas must be less than or equal to replicas.max",
            lambda s: s.scaling.fallback_replicas <= s.replicas.max,
            ".scaling.fallbackReplicas",
        ),
    )

    image: str = Field(min_length=1, max_length=512)
    """Container image with the worker runtime and the handlers."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image (the worker container's imagePullPolicy)."""
    queue: str = Field(pattern=QUEUE_NAME_PATTERN, max_length=63)
    """The queue the workers drain."""
    database: Database
    replicas: Replicas = nested(Replicas)
    scaling: Scaling = nested(Scaling)
    worker: WorkerSettings
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=MAX_ENV_VARS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Extra environment variables for the worker container."""
    resources: Resources = nested(Resources)
    metrics: Metrics = nested(Metrics)
    template: PodTemplateOverrides = nested(PodTemplateOverrides)
    paused: bool = False
    """Leave the Deployment alone (no reconciling, no scaling) while true."""
    schedules: list[Schedule] = Field(
        default_factory=list,
        max_length=MAX_SCHEDULES,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Jobs enqueued on the pool's queue at the times cron expressions name."""

    @model_validator(mode="after")
    def _schedule_names_unique(self) -> WorkerPoolSpec:
        # The API server refuses duplicates by the list's map key; the same here.
        seen: dict[str, int] = {}
        for index, schedule in enumerate(self.schedules):
            first = seen.setdefault(schedule.name, index)
            if first != index:
                raise ValueError(
                    f"schedules[{index}].name {schedule.name!r} is also the name of "
                    f"schedules[{first}]: schedule names must be unique"
                )
        return self


# -- WorkerPool status ---------------------------------------------------------------------------


class Condition(StatusModel):
    """A condition as the Kubernetes API conventions define it."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=CONDITION_REASON_PATTERN, max_length=1024)
    message: str = Field("", max_length=32768)
    observed_generation: int | None = Field(None, ge=0)
    last_transition_time: Timestamp


ConditionList = Annotated[
    list[Condition],
    Field(
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class QueueStatus(StatusModel):
    """The pool's queue as the last stats query saw it."""

    pending: int = 0
    """Jobs ready to run."""
    scheduled: int = 0
    """Pending jobs whose run_at is in the future."""
    running: int = 0
    succeeded: int = 0
    dead: int = 0
    cancelled: int = 0
    oldest_pending_seconds: int | None = None
    """Age of the oldest ready job, in seconds."""
    oldest_pending: str | None = None
    """The same age, spelled as a duration ('2m5s')."""
    throughput_per_minute: int = 0
    """Jobs finished in the last minute."""


class WorkerCounts(StatusModel):
    """The pool's workers by their heartbeat rows."""

    online: int = 0
    busy: int = 0
    idle: int = 0
    draining: int = 0
    dead: int = 0


Health = Annotated[str, WithJsonSchema({"type": "string", "enum": list(reasons.HEALTH_WORDS)})]


class ScheduleStatus(StatusModel):
    """One of spec.schedules as the database records it."""

    name: str = Field(max_length=200)
    suspended: bool | None = None
    last_schedule_time: Timestamp | None = None
    """Scheduled time of the last run enqueued."""
    last_job_id: int | None = None
    """The job of the last run."""
    last_job_state: str | None = Field(None, max_length=16)
    """That job's state (pending, running, succeeded, dead, cancelled; pruned once deleted)."""
    next_run_time: Timestamp | None = None
    missed_runs: int | None = None
    """Runs skipped, since the schedule was created: runs that fell while no scheduler ran \
(all but the latest, and that one too when past startingDeadline)."""
    last_missed_time: Timestamp | None = None


class WorkerPoolStatus(StatusModel):
    """What the operator observed; written only by the operator."""

    observed_generation: int | None = None
    replicas: int | None = None
    """Worker pods that exist and are not terminating."""
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    """Replicas the operator asks the Deployment for."""
    selector: str | None = None
    """Label selector of the pool's pods (for the scale subresource)."""
    health: Health | None = None
    """One-word summary of the conditions (the STATUS column)."""
    deployment: str | None = None
    queue: QueueStatus | None = None
    workers: WorkerCounts | None = None
    last_scale_time: Timestamp | None = None
    schedules: list[ScheduleStatus] | None = Field(None, max_length=MAX_SCHEDULES * 2)
    """spec.schedules: each one's last run, its job, next run and missed runs."""
    conditions: ConditionList | None = None


# -- Monitor -------------------------------------------------------------------------------------


class LabelSelectorRequirement(ApiModel):
    cel_rules = (
        Rule(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
            ": (!has(self.values) || size(self.values) == 0)",
            "matchExpressions: In and NotIn need values, Exists and DoesNotExist take none",
            lambda r: (len(r.values) > 0) == (r.operator in ("In", "NotIn")),
            ".values",
        ),
    )

    key: Name
    """The label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value is compared with `values`."""
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS
    )
    """Values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(ApiModel):
    """Which WorkerPools in the Monitor's namespace it watches (empty: all of them)."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    """Labels a WorkerPool must carry, each with this value."""
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS
    )
    """Label requirements a WorkerPool must meet, all of them."""


class NoWorkersWithPendingRule(ApiModel):
    """Fires when jobs are pending and no worker is online."""

    enabled: bool = True
    hold_for: Duration = Field("1m", alias="for")
    """How long the situation must last."""


class FailedJobsRule(ApiModel):
    """Fires when at least `threshold` jobs failed within `window`."""

    enabled: bool = True
    threshold: int = Field(10, ge=1, le=1_000_000)
    window: Duration = "15m"


class OldestPendingRule(ApiModel):
    """Fires when the oldest ready job waited longer than `threshold`."""

    enabled: bool = True
    threshold: Duration = "10m"


class RunningExceedsCapacityRule(ApiModel):
    """Fires when more jobs run than the online workers' concurrency allows."""

    enabled: bool = True


class MonitorRules(ApiModel):
    """Alert rules, each enabled with its defaults unless `enabled: false`."""

    no_workers_with_pending: NoWorkersWithPendingRule = nested(NoWorkersWithPendingRule)
    failed_jobs: FailedJobsRule = nested(FailedJobsRule)
    oldest_pending: OldestPendingRule = nested(OldestPendingRule)
    running_exceeds_capacity: RunningExceedsCapacityRule = nested(RunningExceedsCapacityRule)


class Webhook(ApiModel):
    """Where incidents are posted."""

    secret_ref: SecretKeyRef
    """The Secret key holding the webhook URL (a URL is a credential)."""
    format: Literal["generic", "slack", "discord"] = "generic"
    timeout: Duration = "10s"


class Alerts(ApiModel):
    """How the Monitor tells what it did and found."""

    events: bool = True
    """Post a Kubernetes Event on the Monitor after each run that recovered, pruned or \
restarted something."""
    webhook: Webhook | None = None


class Retention(ApiModel):
    """How long finished jobs are kept (unset: forever)."""

    succeeded: Duration | None = None
    """Delete succeeded jobs that finished longer ago than this."""
    dead: Duration | None = None
    """Delete dead-lettered jobs that died longer ago than this."""
    cancelled: Duration | None = None
    """Delete cancelled jobs that were cancelled longer ago than this."""


class MonitorSpec(ApiModel):
    """Recovery and alerting for the selected WorkerPools' queues."""

    selector: LabelSelector = nested(LabelSelector)
    interval: Duration = "30s"
    """How often the Monitor runs."""
    stuck_job_after: Duration = "3m"
    """A running job whose lease expired this long ago counts as stuck."""
    dead_worker_after: Duration = "2m"
    """A worker whose heartbeat is older than this is marked dead and its jobs released."""
    restart_hung_workers: bool = False
    """Delete the pod of a worker that stopped heartbeating while its pod runs."""
    rules: MonitorRules = nested(MonitorRules)
    alerts: Alerts = nested(Alerts)
    retention: Retention = nested(Retention)

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def dead_worker_after_seconds(self) -> float:
        return parse_duration(self.dead_worker_after)


class Incident(StatusModel):
    rule: str = Field(max_length=64)
    pool: str = Field(max_length=MAX_NAME_LENGTH)
    state: Literal["firing", "resolved"]
    since: Timestamp
    resolved_at: Timestamp | None = None
    message: str = Field("", max_length=MAX_STRING_LENGTH)


class MonitorTotals(StatusModel):
    """Counts since the Monitor was created (one run's counts have the same shape)."""

    stuck_jobs_rescued: int = 0
    """Running jobs whose lease expired, put back to pending."""
    jobs_dead_lettered: int = 0
    """Jobs of expired leases or dead workers that were out of attempts, moved to dead."""
    dead_workers_reaped: int = 0
    """Workers whose heartbeat stopped, marked dead."""
    jobs_released: int = 0
    """Running jobs of dead workers, put back to pending."""
    pods_restarted: int = 0
    """Pods of hung workers deleted (spec.restartHungWorkers)."""
    jobs_pruned: int = 0
    """Finished jobs deleted (spec.retention)."""

    def plus(self, other: MonitorTotals) -> MonitorTotals:
        names = type(self).model_fields
        return MonitorTotals(**{name: getattr(self, name) + getattr(other, name) for name in names})

    @property
    def recovered(self) -> int:
        """Jobs given back to the queue: rescued from expired leases, released from dead workers."""
        return self.stuck_jobs_rescued + self.jobs_released


class MonitorStatus(StatusModel):
    observed_generation: int | None = None
    last_run: Timestamp | None = None
    pools: int | None = None
    """WorkerPools the selector matched at the last run."""
    pool_names: list[Annotated[str, Field(max_length=MAX_NAME_LENGTH)]] | None = Field(
        None, max_length=MAX_LIST_ITEMS
    )
    firing: int | None = None
    """Incidents firing now."""
    recovered: int | None = None
    """Jobs recovered since creation (rescued from expired leases or released from dead workers)."""
    totals: MonitorTotals | None = None
    incidents: list[Incident] | None = Field(None, max_length=MAX_INCIDENTS)
    conditions: ConditionList | None = None
