"""OpenTelemetry traces: one trace per customer message, from the webhook to Gupshup.

Ingress starts the trace and puts its W3C `traceparent` in the stream entry; each stage
continues it (enrich from the inbound entry, the agent from its turn's first message through
storage/origins.py, the sender from the reply's origin). Graph nodes, model requests and tool
calls are spans inside the agent's turn; the model and tool spans come from Pydantic AI's own
instrumentation. Spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is
set; otherwise every function here is a no-op and costs next to nothing.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, ContextManager, Iterator

from ops.logs import bound
from ops.settings import Settings

if TYPE_CHECKING:  # imported for real only when tracing is on (setup())
    from opentelemetry.context import Context
    from opentelemetry.trace import Link

log = logging.getLogger(__name__)

# Fields bound to log lines (masked there) but kept out of spans, which leave for a third party
# (Langfuse): the chat id is the customer's phone number, and the thread id contains it.
PERSONAL = frozenset({"chat_id", "thread_id"})

_tracer: Any = None  # opentelemetry Tracer, once setup() found an endpoint
_provider: Any = None


def setup(settings: Settings) -> bool:
    """Export spans to settings.otel_exporter_otlp_endpoint; False (tracing off) when unset."""
    global _tracer, _provider
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from pydantic_ai import Agent, InstrumentationSettings

    shutdown()
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    # The endpoint is the collector's base URL, as the variable's standard meaning says.
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=endpoint.rstrip("/") + "/v1/traces",
                headers=parse_headers(settings.otel_exporter_otlp_headers),
            )
        )
    )
    # Model requests and tool calls: Pydantic AI's spans. Prompts and answers stay out of the
    # spans (customers' messages are personal data; the trace shows the shape and the timing).
    Agent.instrument_all(
        InstrumentationSettings(
            tracer_provider=provider, include_content=False, include_binary_content=False
        )
    )
    _provider, _tracer = provider, provider.get_tracer("skytide")
    log.info("tracing: OTLP/HTTP to %s", endpoint)
    return True


def parse_headers(value: str | None) -> dict[str, str]:
    """`k=v,k2=v2` (values URL-encoded, as the OpenTelemetry specification says) as a dict."""
    from urllib.parse import unquote

    headers = {}
    for pair in (value or "").split(","):
        key, sep, val = pair.partition("=")
        if not sep or not key.strip():
            if pair.strip():
                raise ValueError(f"OTEL_EXPORTER_OTLP_HEADERS: {pair!r} is not key=value")
            continue
        headers[key.strip()] = unquote(val.strip())
    return headers


def shutdown() -> None:
    """Send the spans still buffered and stop exporting."""
    global _tracer, _provider
    if _provider is not None:
        from pydantic_ai import Agent

        Agent.instrument_all(False)
        _provider.shutdown()
    _tracer = _provider = None


def enabled() -> bool:
    return _tracer is not None


def _parent_context(traceparent: str | None, new_trace: bool) -> Context | None:
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if traceparent:
        return TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    return Context() if new_trace else None  # an empty context starts a new trace


def _link(traceparent: str) -> Link:
    from opentelemetry import trace

    return trace.Link(
        trace.get_current_span(_parent_context(traceparent, False)).get_span_context()
    )


@contextmanager
def _span(
    name: str,
    traceparent: str | None,
    new_trace: bool,
    links: list[str | None],
    fields: dict[str, Any],
) -> Iterator[None]:
    attributes = {
        f"skytide.{k}": str(v) for k, v in fields.items() if v is not None and k not in PERSONAL
    }
    with _tracer.start_as_current_span(
        name,
        context=_parent_context(traceparent, new_trace),
        links=[_link(t) for t in links if t],
        attributes=attributes,
    ):
        yield


@contextmanager
def span(
    name: str,
    traceparent: str | None = None,
    *,
    new_trace: bool = False,
    links: list[str | None] | None = None,
    **fields: Any,
) -> Iterator[None]:
    """A span (child of `traceparent` when given, else of the current span, else a new trace
    when new_trace), linked to the spans in `links`, whose fields are also bound to the log
    lines written inside it."""
    traced: ContextManager[None] = (
        _span(name, traceparent, new_trace, links or [], fields) if _tracer else nullcontext()
    )
    with traced, bound(**fields):
        yield


def traceparent() -> str | None:
    """The current span as a W3C traceparent, to put in a stream entry; None when not tracing."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")
