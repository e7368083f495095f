"""Sends spans, logs and metrics to Otterline with the OpenTelemetry Python SDK.

Usage: send_otel.py --protocol grpc|http --endpoint URL --service NAME [--spans N] [--logs N] [--tls]

With --tls the gRPC exporters use a secure channel; certificates (CA, client certificate and
key for mutual TLS) and headers (a bearer token) come from the SDK's standard environment:
OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
OTEL_EXPORTER_OTLP_CLIENT_KEY, OTEL_EXPORTER_OTLP_HEADERS (the HTTP exporters read them always).

Exits non-zero if any export did not succeed. Prints a JSON summary of what was sent.
"""

import argparse
import json
import logging
import sys

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

failures = []


class Checked:
    """Wraps an exporter and records every result that is not SUCCESS."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def export(self, batch, *args, **kwargs):
        result = self._inner.export(batch, *args, **kwargs)
        if getattr(result, "name", None) != "SUCCESS":
            failures.append(f"{type(self._inner).__name__}: {result}")
        return result


def exporters(protocol, endpoint, tls=False):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPSpanExporter(endpoint=endpoint, insecure=not tls),
            OTLPLogExporter(endpoint=endpoint, insecure=not tls),
            OTLPMetricExporter(endpoint=endpoint, insecure=not tls),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    kw = {}
    if tls:
        import os

        # Passed explicitly: not every SDK version reads these variables for OTLP/HTTP.
        for arg, var in [
            ("certificate_file", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
            ("client_certificate_file", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
            ("client_key_file", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        ]:
            if os.environ.get(var):
                kw[arg] = os.environ[var]
    return (
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", **kw),
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", **kw),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", **kw),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--service", required=True)
    ap.add_argument("--spans", type=int, default=10)
    ap.add_argument("--logs", type=int, default=3)
    ap.add_argument("--tls", action="store_true")
    args = ap.parse_args()

    resource = Resource.create({"service.name": args.service, "deployment.environment": "test"})
    span_exp, log_exp, metric_exp = exporters(args.protocol, args.endpoint, args.tls)

    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(Checked(span_exp)))
    tracer = tp.get_tracer("otterline-python-test")

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(Checked(log_exp)))
    set_logger_provider(lp)
    log = logging.getLogger("otterline-python-test")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))

    reader = PeriodicExportingMetricReader(Checked(metric_exp), export_interval_millis=60_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    counter = mp.get_meter("otterline-python-test").create_counter("py.requests", unit="1")

    for i in range(args.spans):
        with tracer.start_as_current_span(f"py-span-{i}", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("i", i)
            span.set_attribute("gen_ai.request.model", "claude-sonnet-4")
            span.set_attribute("ratio", i / 10)
            span.set_attribute("ok", i % 2 == 0)
            span.add_event("tool_call", {"tool": "search"})
            counter.add(1, {"route": "/agent"})
    for i in range(args.logs):
        log.warning("py log %d", i)

    tp.force_flush()
    lp.force_flush()
    mp.force_flush()
    tp.shutdown()
    lp.shutdown()
    mp.shutdown()

    print(json.dumps({"spans": args.spans, "logs": args.logs, "failures": failures}))
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
