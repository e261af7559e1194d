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

import math
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
from pydantic.alias_generators import to_camel, to_snake
from pydantic_core import PydanticCustomError

from workerfleet.durations import DURATION_PATTERN, format_duration, parse_duration
from workerfleet.operator import grammars, reasons
from workerfleet.worker import config as worker_config
from workerfleet.worker import cron as crontab
from workerfleet.worker import retry
from workerfleet.worker.models import (
    FAILURE_HISTORY_MINUTES,
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
MAX_QUANTITY_LENGTH = 64
MAX_RESOURCES = 16
MAX_SELECTOR_LABELS = 64
DEFAULT_REQUESTS: dict[str, int | str] = {"cpu": "50m", "memory": "64Mi"}
DEFAULT_LIMITS: dict[str, int | str] = {"memory": "512Mi"}
HANDLERS_PATTERN = r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*|command:.*\S.*)$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
# Kubernetes' own quantity grammar (resource.Quantity), as in the core API's schema.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
PERCENT_STEP_PATTERN = r"^[1-9][0-9]{0,3}%$"
MIN_POLL_SECONDS = 1.0
MAX_SCHEDULES = 50
SCHEDULE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

# The worker's variables, set by the operator from the spec; a user's env entry may not
# shadow them.
RESERVED_ENV_PREFIX = worker_config.ENV_PREFIX
RESERVED_ENV_NAMES = worker_config.UNPREFIXED_VARIABLES


# -- rules ---------------------------------------------------------------------------------------

RULE_ERROR = "spec_rule"
"""The pydantic error type of a broken Rule (its context names the field)."""


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the API server, a predicate for the operator.

    When the message depends on the values (which key is wrong), ``message_cel``
    builds it on the server and ``describe`` in Python; ``message`` is then the
    fallback the API server shows if the expression cannot be evaluated.
    """

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None
    message_cel: str | None = None
    describe: Callable[[Any], str] | None = None

    def as_validation(self) -> dict[str, str]:
        validation = {"rule": self.cel, "message": self.message}
        if self.message_cel is not None:
            validation["messageExpression"] = self.message_cel
        if self.field_path is not None:
            validation["fieldPath"] = self.field_path
        return validation

    def explain(self, value: Any) -> str:
        return self.describe(value) if self.describe is not None else self.message

    @property
    def field(self) -> str:
        """The field path below the model ('' for the model itself), as in ``fieldPath``."""
        return self.field_path or ""


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
        # As the API server: "yes" is no boolean and "2" no number.
        strict=True,
        frozen=True,
        use_attribute_docstrings=True,
        json_schema_extra=_schema_extra,
    )
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in type(self).cel_rules:
            if not rule.check(self):
                # The field rides along in the context, to be named as the API server names it.
                raise PydanticCustomError(
                    RULE_ERROR, "{message}", {"message": rule.explain(self), "field": rule.field}
                )
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
            "maxLength": MAX_QUANTITY_LENGTH,
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


# -- rules more than one model states ------------------------------------------------------------
#
# Each is a Rule: the CEL the API server runs at admission and the Python check the
# operator runs on the same spec (grammars.py has the pieces both need).


def positive_duration(field: str, where: str, why: str) -> Rule:
    """``field`` (camelCase, optional or not) must be longer than 0: ``why`` zero cannot work."""
    attribute = to_snake(field)
    seconds = grammars.seconds_cel(f"self.{field}")
    name = f"{where}.{field}" if where else field
    return Rule(
        f"!has(self.{field}) || {seconds} > 0.0",
        f"{name} must be longer than 0: {why}",
        lambda m: (value := getattr(m, attribute)) is None or parse_duration(value) > 0,
        f".{field}",
    )


KeyCheck = Callable[[Any, str, Any], bool]
"""A Python check of one map entry: (the model, the key, the value) -> valid."""


def every_key(mapping: str, where: str, ok: str, check: KeyCheck, help_text: str) -> Rule:
    """Every key ``k`` of the map ``self.<mapping>`` must pass ``ok`` (CEL over ``k``) and
    ``check``; the message names the first key that fails."""
    attribute = to_snake(mapping)

    def failing(model: Any) -> list[str]:
        return [k for k, v in getattr(model, attribute).items() if not check(model, k, v)]

    return Rule(
        f"!has(self.{mapping}) || self.{mapping}.all(k, {ok})",
        f"{where}: a key {help_text}",
        lambda m: not failing(m),
        f".{mapping}",
        message_cel=f"{grammars.cel_string(where + '.')} + self.{mapping}.filter(k, !({ok}))[0]"
        f" + {grammars.cel_string(' ' + help_text)}",
        describe=lambda m: f"{where}.{next(iter(failing(m)), '')} {help_text}",
    )


def _parsable(_: Any, __: str, value: int | str) -> bool:
    return grammars.parse_quantity(value) is not None


def _not_negative(_: Any, __: str, value: int | str) -> bool:
    quantity = grammars.parse_quantity(value)
    return quantity is None or quantity >= 0


def _whole_if_extended(_: Any, name: str, value: int | str) -> bool:
    quantity = grammars.parse_quantity(value)
    if not grammars.is_extended_resource(name) or quantity is None:
        return True
    return quantity == quantity.to_integral_value()


def _request_fits(resources: Any, name: str, request: int | str) -> bool:
    limit = resources.limits.get(name)
    wanted = grammars.parse_quantity(request)
    most = None if limit is None else grammars.parse_quantity(limit)
    return wanted is None or most is None or wanted <= most


def _request_matched(resources: Any, name: str, request: int | str) -> bool:
    if not grammars.is_overcommit_forbidden(name):
        return True
    limit = resources.limits.get(name)
    return limit is not None and grammars.parse_quantity(request) == grammars.parse_quantity(limit)


RESOURCE_NAME_HELP = (
    "is not a resource name: use cpu, memory, ephemeral-storage, hugepages-<size> "
    "or a domain-prefixed name such as example.com/gpu"
)


def resource_map_rules(kind: str) -> tuple[Rule, ...]:
    """The names and quantities of ``resources.<kind>`` (requests or limits)."""
    where = f"resources.{kind}"
    value = f"self.{kind}[k]"
    parsable = grammars.is_quantity_cel(value)
    quantity = grammars.quantity_cel(value)
    extended = grammars.extended_resource_cel("k")
    return (
        every_key(
            kind,
            where,
            grammars.resource_name_cel("k"),
            lambda _, k, __: grammars.is_resource_name(k),
            RESOURCE_NAME_HELP,
        ),
        every_key(
            kind,
            where,
            parsable,
            _parsable,
            "is not a quantity: write it as 500m, 2, 1.5, 64Mi or 1Gi",
        ),
        every_key(
            kind,
            where,
            f"!{parsable} || !{quantity}.isLessThan(quantity('0'))",
            _not_negative,
            "must not be negative",
        ),
        every_key(
            kind,
            where,
            f"!{extended} || !{parsable} || {quantity}.isInteger()",
            _whole_if_extended,
            "is an extended resource: it comes in whole units",
        ),
    )


def request_limit_rules() -> tuple[Rule, ...]:
    """Each request against its limit, as the API server judges a pod's."""
    request = grammars.quantity_cel("self.requests[k]")
    limit = grammars.quantity_cel("self.limits[k]")
    both = (
        f"has(self.limits) && k in self.limits && "
        f"{grammars.is_quantity_cel('self.requests[k]')} && "
        f"{grammars.is_quantity_cel('self.limits[k]')}"
    )
    defaults = ", ".join(f"{name} {value}" for name, value in DEFAULT_LIMITS.items())
    return (
        every_key(
            "requests",
            "resources.requests",
            f"!({both}) || !{request}.isGreaterThan({limit})",
            _request_fits,
            f"must not be above its limit (the default limits: {defaults})",
        ),
        every_key(
            "requests",
            "resources.requests",
            f"!{grammars.overcommit_forbidden_cel('k')} || "
            f"({both} && {request}.compareTo({limit}) == 0)",
            _request_matched,
            "is hugepages or an extended resource: its limit must be set and equal to the request",
        ),
    )


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
    """How the pool is sized from its queue: ceil((ready pending + running) / jobsPerWorker) \
workers, within replicas.min and replicas.max, re-evaluated on every enqueue's NOTIFY. \
Scale-in takes idle workers only: they are drained first, then their pods go."""

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
        Rule(
            f"{grammars.seconds_cel('self.pollInterval')} >= {MIN_POLL_SECONDS}",
            f"scaling.pollInterval must be at least {MIN_POLL_SECONDS:g}s (the operator "
            "evaluates pools on a one-second timer; NOTIFYs trigger evaluations at once anyway)",
            lambda s: parse_duration(s.poll_interval) >= MIN_POLL_SECONDS,
            ".pollInterval",
        ),
    )

    jobs_per_worker: int = Field(10, ge=1, le=1_000_000)
    """Target of (ready pending + running) jobs per worker: the pool runs \
ceil((ready pending + running) / jobsPerWorker) workers, within replicas.min and max; jobs \
scheduled for later count once due. Against worker.concurrency (jobs one worker runs at once): \
equal, every ready job runs at once at that size; larger (say 2 x concurrency), each worker \
works through a backlog of jobsPerWorker - concurrency jobs (fewer workers, a longer queue); \
smaller, slots stay idle by construction (the ScalingActive condition says so)."""
    activation_jobs: int = Field(1, ge=1, le=1_000_000)
    """At zero workers, the ready pending jobs it takes to start the first one (scale from \
zero). Applies at zero only; above zero the pool follows jobsPerWorker down to replicas.min."""
    poll_interval: Duration = "5s"
    """Longest time between two evaluations of the pool's size while the operator cannot \
read the pool's queue (database or Secret unreachable), or with the operator's \
statusRefresh=interval. Otherwise every enqueue's NOTIFY, and the database's stats round \
(once a second) on any change of the pool's figures, trigger an evaluation at once, and \
what changes with time alone (a scale-up period, the scaleDownDelay window) has its own \
wake-up. At least 1s."""
    scale_down_delay: Duration = "120s"
    """Scale-down stabilization window: the pool shrinks only to the highest size \
recommended during the last scaleDownDelay, as the HPA does. A (re)started operator begins \
with a full window, so it never shrinks at once. 0s shrinks as soon as the queue allows."""
    max_scale_up_step: IntOrPercent = 10
    """Most workers added per 15-second period (the HPA's period; evaluations run on every \
NOTIFY, so a step per evaluation would limit nothing): a number, or a percentage of the size at \
the start of the period ('100%' doubles it), at least 1. Reaching replicas.min is not \
limited; replicas.max lets any burst through at once."""
    fallback_replicas: int = Field(1, ge=0, le=MAX_REPLICAS)
    """While the queue cannot be read (database down, Secret missing), the pool holds \
max(current replicas, fallbackReplicas, replicas.min) and never shrinks; ScalingActive is \
False meanwhile."""

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

    cel_rules = (
        positive_duration("pollInterval", "worker", "workers would poll without pause"),
        positive_duration("heartbeatInterval", "worker", "workers would heartbeat without pause"),
        positive_duration("jobTimeout", "worker", "every job would time out at once"),
        positive_duration(
            "healthLogInterval", "worker", "workers would log their health without pause"
        ),
        Rule(
            "!has(self.leaseDuration) || "
            f"{grammars.seconds_cel('self.leaseDuration')} > "
            f"{grammars.seconds_cel('self.heartbeatInterval')}",
            "worker.leaseDuration must be longer than worker.heartbeatInterval, or a live "
            "worker loses its jobs between two heartbeats",
            lambda w: w.lease_duration is None or w.lease_seconds > w.heartbeat_seconds,
            ".leaseDuration",
        ),
        Rule(
            f"{grammars.seconds_cel('self.retryBase')} <= {grammars.seconds_cel('self.retryCap')}",
            "worker.retryBase must not be longer than worker.retryCap",
            lambda w: w.retry_base_seconds <= w.retry_cap_seconds,
            ".retryBase",
        ),
    )

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

    cel_rules = (
        *resource_map_rules("requests"),
        *resource_map_rules("limits"),
        *request_limit_rules(),
    )

    requests: dict[str, Quantity] = Field(default=DEFAULT_REQUESTS, max_length=MAX_RESOURCES)
    """Requested resources (cpu, memory, ephemeral-storage, hugepages-<size>, example.com/gpu)."""
    limits: dict[str, Quantity] = Field(default=DEFAULT_LIMITS, max_length=MAX_RESOURCES)
    """Resource limits; the default limits memory to 512Mi, so a larger memory request \
needs a limit of its own."""


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

    @field_validator("env")
    @classmethod
    def _env_names_once(cls, env: list[EnvVar]) -> list[EnvVar]:
        # The API server refuses these by the list's map keys; the operator, here.
        seen: set[str] = set()
        for index, variable in enumerate(env):
            if variable.name in seen:
                raise PydanticCustomError(
                    RULE_ERROR,
                    "{message}",
                    {"message": f"env name {variable.name} is set twice", "field": f"[{index}]"},
                )
            seen.add(variable.name)
        return env


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


class ScalingStatus(StatusModel):
    """The last scaling decision."""

    reason: str = Field("", max_length=64)
    """Why the pool has its size: QueueDepth, Minimum, Maximum, ScaleUpLimited, \
ScaleDownDelayed, BusyWorkers, BelowActivation, QueueUnreadable, Override or ScaleInHeld."""
    message: str = Field("", max_length=MAX_STRING_LENGTH)
    """The decision in words, with its figures ("8 -> 20: 190 ready pending + 10 running \
at 10 per worker, capped by max 20")."""
    recommended_replicas: int | None = None
    """What the queue alone asks for: ceil((ready pending + running) / jobsPerWorker)."""


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
    """When the operator last changed the Deployment's replicas."""
    scaling: ScalingStatus | None = None
    schedules: list[ScheduleStatus] | None = Field(None, max_length=MAX_SCHEDULES * 2)
    """spec.schedules: each one's last run, its job, next run and missed runs."""
    conditions: ConditionList | None = None


# -- Monitor -------------------------------------------------------------------------------------


# A label value as a selector states it. Nullable in the schema on purpose: the API server
# silently drops a null from a map that is not, so `matchLabels: {team: }` would select
# every pool; kept, the null meets the rule below and the spec is refused.
SelectorLabelValue = Annotated[
    str | None,
    WithJsonSchema(
        {"type": "string", "nullable": True, "maxLength": grammars.LABEL_VALUE_MAX_LENGTH}
    ),
]
MAX_SELECTOR_EXPRESSIONS = 32
MAX_SELECTOR_VALUES = 64
LABEL_KEY_HELP = (
    "is not a label key: [prefix/]name, the name at most 63 letters, digits, dashes, "
    "underscores or dots, starting and ending with a letter or digit"
)
LABEL_VALUE_HELP = (
    "is not a label value: at most 63 letters, digits, dashes, underscores or dots, "
    "starting and ending with a letter or digit"
)
NULL_LABEL_HELP = (
    "has no value (written as `key:` with nothing after it): quote the value, "
    "or use matchExpressions with operator Exists"
)
_LABEL = "self.matchLabels[k]"


class LabelSelectorRequirement(ApiModel):
    cel_rules = (
        Rule(
            grammars.qualified_name_cel("self.key"),
            f"matchExpressions: the key {LABEL_KEY_HELP}",
            lambda r: grammars.is_qualified_name(r.key),
            ".key",
        ),
        Rule(
            f"!has(self.values) || self.values.all(v, {grammars.label_value_cel('v')})",
            f"matchExpressions: a value {LABEL_VALUE_HELP}",
            lambda r: all(grammars.is_label_value(v) for v in r.values),
            ".values",
        ),
        Rule(
            "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
            ": (!has(self.values) || size(self.values) == 0)",
            "matchExpressions: In and NotIn need values, Exists and DoesNotExist take none",
            lambda r: (len(r.values) > 0) == (r.operator in ("In", "NotIn")),
            ".values",
        ),
    )

    key: str = Field(
        min_length=1, max_length=grammars.PREFIX_MAX_LENGTH + 1 + grammars.NAME_PART_MAX_LENGTH
    )
    """The label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value is compared with `values`."""
    values: list[Annotated[str, Field(max_length=grammars.LABEL_VALUE_MAX_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_SELECTOR_VALUES
    )
    """Values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(ApiModel):
    """Which WorkerPools in the Monitor's namespace it watches (empty: all of them)."""

    cel_rules = (
        every_key(
            "matchLabels",
            "selector.matchLabels",
            f"type({_LABEL}) == string",
            lambda _, __, value: value is not None,
            NULL_LABEL_HELP,
        ),
        every_key(
            "matchLabels",
            "selector.matchLabels",
            grammars.qualified_name_cel("k"),
            lambda _, key, __: grammars.is_qualified_name(key),
            LABEL_KEY_HELP,
        ),
        every_key(
            "matchLabels",
            "selector.matchLabels",
            f"type({_LABEL}) != string || {grammars.label_value_cel(_LABEL)}",
            lambda _, __, value: value is None or grammars.is_label_value(value),
            LABEL_VALUE_HELP,
        ),
    )

    match_labels: dict[str, SelectorLabelValue] = Field(
        default_factory=dict, max_length=MAX_SELECTOR_LABELS
    )
    """Labels a WorkerPool must carry, each with this value (a null value is refused)."""
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=MAX_SELECTOR_EXPRESSIONS
    )
    """Label requirements a WorkerPool must meet, all of them."""


MAX_RULE_WINDOW_SECONDS = FAILURE_HISTORY_MINUTES * 60
MAX_WEBHOOK_TIMEOUT_SECONDS = 60


class AlertRule(ApiModel):
    """What every rule has: a switch and how long its condition must hold."""

    enabled: bool = True
    """Evaluate this rule (false: never fire; a firing incident resolves)."""
    hold_for: Duration = Field("0s", alias="for")
    """How long the condition must hold, without a break, before the incident fires (0s: at \
the first run that sees it)."""

    @property
    def hold_for_seconds(self) -> float:
        return parse_duration(self.hold_for)


def _window_rules(path: str) -> tuple[Rule, ...]:
    return (
        positive_duration("window", path, "no failure would ever fall in it"),
        Rule(
            f"{grammars.seconds_cel('self.window')} <= {float(MAX_RULE_WINDOW_SECONDS)}",
            f"{path}.window must be at most {format_duration(MAX_RULE_WINDOW_SECONDS)} "
            "(failures are counted per minute for the last hour)",
            lambda r: parse_duration(r.window) <= MAX_RULE_WINDOW_SECONDS,
            ".window",
        ),
    )


class WindowRule(AlertRule):
    """A rule counting events of the last `window`, counted per minute: a window of 15m \
covers the current minute and the 14 before it."""

    window: Duration = "15m"
    """How far back events count (at most 1h)."""

    @property
    def window_minutes(self) -> int:
        return max(1, math.ceil(parse_duration(self.window) / 60))


class NoWorkersWithPendingRule(AlertRule):
    """Fires when jobs are ready to run and no worker of the pool is online."""

    hold_for: Duration = Field("1m", alias="for")
    """How long the situation must last before the incident fires."""


class FailedJobsRule(WindowRule):
    """Fires when at least `threshold` attempts failed within `window`: handler errors and \
timeouts (retried or dead-lettered), jobs buried as permanent errors, and attempts lost with \
their worker (lease expired, worker dead)."""

    cel_rules = _window_rules("rules.failedJobs")

    threshold: int = Field(10, ge=1, le=1_000_000)
    """Failed attempts that fire the rule (at least 1)."""


class DeadJobsRule(WindowRule):
    """Fires when at least `threshold` jobs were dead-lettered within `window`."""

    cel_rules = _window_rules("rules.deadJobs")

    threshold: int = Field(1, ge=1, le=1_000_000)
    """Dead-lettered jobs that fire the rule (at least 1: any)."""


class OldestPendingRule(AlertRule):
    """Fires when the oldest ready job has waited longer than `threshold` (since its run_at)."""

    cel_rules = (
        positive_duration("threshold", "rules.oldestPending", "every pending job would count"),
    )

    threshold: Duration = "10m"
    """Longest acceptable wait of a ready job."""

    @property
    def threshold_seconds(self) -> float:
        return parse_duration(self.threshold)


class RunningExceedsCapacityRule(AlertRule):
    """Fires when the pool's workers hold more running jobs than its online and draining \
workers' concurrency allows (worker.concurrency each): jobs left running by a worker that \
died without being noticed, or counters that drifted."""

    hold_for: Duration = Field("2m", alias="for")
    """How long the excess must last (a rollout that changes concurrency passes sooner)."""


class QueueGrowingRule(AlertRule):
    """Fires when the pool runs as many workers as it may (replicas.max, or the override) and \
its ready backlog has not fallen between runs and has grown overall, for `for`: scaling \
cannot keep up."""

    hold_for: Duration = Field("10m", alias="for")
    """How long the backlog must keep growing at the ceiling."""


class MonitorRules(ApiModel):
    """Alert rules, each enabled with its defaults unless `enabled: false`."""

    no_workers_with_pending: NoWorkersWithPendingRule = nested(NoWorkersWithPendingRule)
    failed_jobs: FailedJobsRule = nested(FailedJobsRule)
    dead_jobs: DeadJobsRule = nested(DeadJobsRule)
    oldest_pending: OldestPendingRule = nested(OldestPendingRule)
    running_exceeds_capacity: RunningExceedsCapacityRule = nested(RunningExceedsCapacityRule)
    queue_growing: QueueGrowingRule = nested(QueueGrowingRule)


class WebhookSecretRef(ApiModel):
    """A key of a Secret in the Monitor's namespace holding the webhook URL."""

    name: Name
    """Name of the Secret."""
    key: Name = "url"
    """Key in the Secret's data whose value is the http(s) URL."""


class Webhook(ApiModel):
    """Where incidents are posted: one POST when an incident fires, one when it resolves."""

    cel_rules = (
        positive_duration("timeout", "alerts.webhook", "every delivery would time out"),
        Rule(
            f"{grammars.seconds_cel('self.timeout')} <= {float(MAX_WEBHOOK_TIMEOUT_SECONDS)}",
            f"alerts.webhook.timeout must be at most {MAX_WEBHOOK_TIMEOUT_SECONDS}s",
            lambda w: parse_duration(w.timeout) <= MAX_WEBHOOK_TIMEOUT_SECONDS,
            ".timeout",
        ),
    )

    secret_ref: WebhookSecretRef
    """The Secret key holding the webhook URL (the URL is a credential: it never appears in \
status, Events or logs)."""
    format: Literal["generic", "slack", "discord"] = "generic"
    """Body of each POST: generic (a JSON object, see the README), slack (an incoming \
webhook's text and blocks) or discord (a webhook message with an embed)."""
    timeout: Duration = "10s"
    """Longest one delivery attempt may take (at most 60s); failed attempts are retried \
with exponential backoff and jitter, honouring Retry-After on HTTP 429."""

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)


class Alerts(ApiModel):
    """How the Monitor tells what it did and found."""

    events: bool = True
    """Post Kubernetes Events: on the Monitor after each run that recovered, pruned or \
restarted something, and on the Monitor and the WorkerPool when an incident fires or resolves."""
    webhook: Webhook | None = None
    repeat_interval: Duration | None = None
    """Notify an incident that is still firing again this often (unset: once when it fires, \
once when it resolves). At least the Monitor's interval."""

    @property
    def repeat_seconds(self) -> float | None:
        return _seconds(self.repeat_interval)


class Retention(ApiModel):
    """How long finished jobs are kept (unset: forever)."""

    succeeded: Duration | None = None
    """Delete succeeded jobs that finished longer ago than this."""
    dead: Duration | None = None
    """Delete dead-lettered jobs that died longer ago than this."""
    cancelled: Duration | None = None
    """Delete cancelled jobs that were cancelled longer ago than this."""


class MonitorSpec(ApiModel):
    """Recovery and alerting for the selected WorkerPools' queues.

    Recovery touches only the selected pools' queues and workers. When several
    Monitors select one pool, the first of them by name recovers it (its
    stuckJobAfter, deadWorkerAfter, restartHungWorkers and retention apply);
    every one of them evaluates its own rules and sends its own alerts.
    """

    cel_rules = (
        Rule(
            "!has(self.alerts.repeatInterval) || "
            f"{grammars.seconds_cel('self.alerts.repeatInterval')} >= "
            f"{grammars.seconds_cel('self.interval')}",
            "alerts.repeatInterval must be at least the Monitor's interval",
            lambda m: (
                m.alerts.repeat_seconds is None or m.alerts.repeat_seconds >= m.interval_seconds
            ),
            ".alerts.repeatInterval",
        ),
        positive_duration("interval", "", "the Monitor would run without pause"),
        positive_duration(
            "deadWorkerAfter", "", "every worker would count as dead between two heartbeats"
        ),
    )

    selector: LabelSelector = nested(LabelSelector)
    interval: Duration = "30s"
    """How often the Monitor runs (recovery, then its rules)."""
    stuck_job_after: Duration = "0s"
    """How long after its lease ran out a running job counts as stuck and is taken back \
(to pending, or dead when out of attempts). The lease (the WorkerPool's \
worker.leaseDuration, 3 heartbeat intervals by default) is renewed by every heartbeat of \
the job's worker, so it runs out only when that worker stopped heartbeating; this adds a \
grace on top for workers that pause briefly (0s: at expiry). A worker silent for \
deadWorkerAfter has its jobs released whatever this says."""
    dead_worker_after: Duration = "2m"
    """A worker whose heartbeat is older than this is marked dead and its jobs released."""
    restart_hung_workers: bool = False
    """Delete the pod of a worker that stopped heartbeating while its pod still runs that very \
worker (a pod whose container restarted since runs a new worker and is left alone)."""
    rules: MonitorRules = nested(MonitorRules)
    alerts: Alerts = nested(Alerts)
    retention: Retention = nested(Retention)

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def dead_worker_after_seconds(self) -> float:
        return parse_duration(self.dead_worker_after)

    @property
    def stuck_job_after_seconds(self) -> float:
        return parse_duration(self.stuck_job_after)


class Incident(StatusModel):
    """One rule's finding for one pool: pending (holding, `for` not yet elapsed), firing,
    or resolved (kept for a while)."""

    rule: str = Field(max_length=64)
    pool: str = Field(max_length=MAX_NAME_LENGTH)
    state: Literal["pending", "firing", "resolved"]
    since: Timestamp
    """When the rule's condition started holding."""
    fired_at: Timestamp | None = None
    resolved_at: Timestamp | None = None
    notified_at: Timestamp | None = None
    """When the last notification about it was queued."""
    message: str = Field("", max_length=MAX_STRING_LENGTH)
    """What the rule saw at the last run."""
    value: int | None = None
    """The figure the rule compared, at the last run."""
    first_value: int | None = None
    """The same figure when the condition started holding."""


class DeliveryStatus(StatusModel):
    """How webhook notifications fare; the URL never appears here."""

    pending: int = 0
    """Notifications queued or being retried now."""
    delivered: int = 0
    """Notifications the receiver accepted, since the Monitor was created."""
    failed: int = 0
    """Notifications given up on (retries exhausted, refused with a 4xx, or dropped from a \
full outbox), since the Monitor was created."""
    last_success_time: Timestamp | None = None
    last_failure_time: Timestamp | None = None
    last_failure: str | None = Field(None, max_length=MAX_STRING_LENGTH)
    """The HTTP status or error of the last failed attempt."""


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
    """Pending and firing incidents, then resolved ones, newest first."""
    delivery: DeliveryStatus | None = None
    conditions: ConditionList | None = None
