"""OpenTelemetry tracing of jobs: optional (``pip install workerfleet[otel]``), free when unused.

* Enqueue records the caller's trace context with the job, in its
  ``trace_context`` column (a W3C carrier: ``traceparent``, ``tracestate``),
  never in the payload. Only a process that has imported OpenTelemetry itself
  can be inside a span, so until then nothing here imports it.
* The worker runs each attempt inside a span whose parent is that context (so
  the job shares the enqueuer's trace) and which links to it, with
  ``job.id``, ``job.queue``, ``job.task``, ``job.attempt`` and ``job.outcome``;
  a failed attempt records its exception and an error status.
* A ``command:`` handler gets the attempt span's context as ``TRACEPARENT``
  (and ``TRACESTATE``) in its environment.
* ``workerfleet-worker`` sets up the SDK from the standard ``OTEL_*``
  variables (exporter, endpoint, service name, sampler) when one of
  TRACING_VARIABLES is set; a handlers module that configures its own tracer
  provider is used as it is. With neither, the worker imports nothing of
  OpenTelemetry and a job costs one dictionary look-up more.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from workerfleet.worker.models import Job

TRACER_NAME = "workerfleet.worker"
# Loaded by anything that can have a current span.
API_MODULE = "opentelemetry.trace"
# The variables that ask the worker to export traces (the SDK reads the rest itself).
TRACING_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
DEFAULT_SERVICE_NAME = "workerfleet-worker"
ERROR_DESCRIPTION_MAX_CHARS = 500

log = logging.getLogger("workerfleet.tracing")


def active() -> bool:
    """Whether this process uses OpenTelemetry at all (without it, no span can exist)."""
    return API_MODULE in sys.modules


def current_carrier() -> dict[str, str] | None:
    """The current span's context as a W3C carrier; None outside any recording span."""
    if not active():
        return None
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def job_span(job: Job, worker_id: str) -> AbstractContextManager[object]:
    """The span one attempt of ``job`` runs in (a no-op without OpenTelemetry)."""
    if not active():
        return contextlib.nullcontext()
    return _job_span(job, worker_id)


@contextlib.contextmanager
def _job_span(job: Job, worker_id: str) -> Iterator[object]:
    from opentelemetry import propagate, trace

    parent = propagate.extract(job.trace_context) if job.trace_context else None
    enqueued = trace.get_current_span(parent).get_span_context() if parent else None
    links = [trace.Link(enqueued)] if enqueued is not None and enqueued.is_valid else []
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        f"job {job.task}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        links=links,
        attributes={
            "job.id": job.id,
            "job.queue": job.queue,
            "job.task": job.task,
            "job.attempt": job.attempt,
            "worker.id": worker_id,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def set_outcome(outcome: str) -> None:
    """``job.outcome`` of the attempt running in this context: succeeded, retried, dead,
    released or fenced."""
    if not active():
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute("job.outcome", outcome)


def record_error(error: BaseException, description: str) -> None:
    """The attempt running in this context failed with ``error``."""
    if not active():
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, description[:ERROR_DESCRIPTION_MAX_CHARS]))


def command_environment() -> dict[str, str]:
    """TRACEPARENT (and TRACESTATE) of the current span, for a program run per job."""
    carrier = current_carrier()
    if not carrier:
        return {}
    return {name.upper(): value for name, value in carrier.items() if name in _W3C_FIELDS}


_W3C_FIELDS = ("traceparent", "tracestate")


def configure_from_environment(environ: Mapping[str, str]) -> TracerProvider | None:
    """An SDK tracer provider exporting as the OTEL_* variables say; None when they ask for
    none, or the extra is missing (said in the log), or the application set its own."""
    if not any(environ.get(name) for name in TRACING_VARIABLES):
        return None
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_* tracing variables are set but OpenTelemetry is not installed: "
            "install workerfleet[otel] to export traces"
        )
        return None
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return None  # configured by the application already
    attributes: dict[str, Any] = {}
    if "OTEL_SERVICE_NAME" not in environ and "service.name=" not in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in _exporters(environ.get("OTEL_TRACES_EXPORTER", "otlp")):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _exporters(names: str) -> list[Any]:
    exporters: list[Any] = []
    for name in (part.strip().lower() for part in names.split(",")):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name not in ("none", ""):
            log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", name)
    return exporters


def shutdown(provider: TracerProvider | None) -> None:
    """Export what is left before the process exits."""
    if provider is not None:
        provider.shutdown()
