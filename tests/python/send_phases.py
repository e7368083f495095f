"""Sends phases of GenAI traffic with the Python SDK, one-minute windows of synthetic time.

Usage: send_phases.py --endpoint URL --t0 NANOS

Phases (windows): steady 40, latency ×4 for 4, steady 20, 40 % errors for 4, steady 20,
a switch to an expensive model for 6, steady 20. Each window has 30 calls of the `chat`
operation. Prints {"windows": N, "phases": [[name, first_window, last_window], ...]}.
"""

import argparse
import json

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

PHASES = [("steady", 40), ("latency", 4), ("steady", 20), ("errors", 4), ("steady", 20), ("expensive", 6), ("steady", 20)]
CALLS = 30
MINUTE = 60_000_000_000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--t0", type=int, required=True)
    args = ap.parse_args()

    tp = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True), max_queue_size=20000, schedule_delay_millis=100, max_export_batch_size=1000))
    tracer = tp.get_tracer("otterline-phases")
    w = 0
    spans = []
    for name, count in PHASES:
        spans.append([name, w, w + count - 1])
        for _ in range(count):
            for i in range(CALLS):
                jitter = 0.8 + 0.4 * ((i * 7919 + w * 31) % 101) / 100
                latency = 0.9 * jitter * (4.0 if name == "latency" else 1.0)
                model = "gpt-4o" if name == "expensive" else "gpt-4o-mini"
                end = args.t0 + w * MINUTE + 1_000_000_000 + i * (MINUTE // (CALLS + 1))
                start = end - int(latency * 1e9)
                span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, start_time=start)
                span.set_attribute("gen_ai.operation.name", "chat")
                span.set_attribute("gen_ai.request.model", model)
                span.set_attribute("gen_ai.usage.input_tokens", 800)
                span.set_attribute("gen_ai.usage.output_tokens", 150)
                if name == "errors" and i < 12:
                    span.set_status(Status(StatusCode.ERROR, "upstream 503"))
                elif i % 50 == 7:
                    span.set_status(Status(StatusCode.ERROR, "timeout"))
                span.end(end_time=end)
            w += 1
    # One more call closes the last window.
    span = tracer.start_span("chat gpt-4o-mini", start_time=args.t0 + w * MINUTE + 1_000_000_000)
    span.set_attribute("gen_ai.operation.name", "chat")
    span.end(end_time=args.t0 + w * MINUTE + 1_500_000_000)
    tp.force_flush()
    tp.shutdown()
    print(json.dumps({"windows": w, "phases": spans}))


if __name__ == "__main__":
    main()
