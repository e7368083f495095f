#!/usr/bin/env python3
"""Demo traffic for the dashboard: four LLM services sending spans with the OpenTelemetry
Python SDK (OTLP/HTTP), with an incident half-way: rag-worker's latency triples and
checkout-agent starts failing, so anomalies, alerts and falling health scores show up.

    OTTERLINE_WINDOW=5s OTTERLINE_ALLOWED_LATENESS=1s cargo run --release   # terminal 1
    .venv/bin/python examples/dashboard_demo.py --seconds 240                # terminal 2
    open http://127.0.0.1:13134/

Needs `opentelemetry-sdk` and `opentelemetry-exporter-otlp` (scripts/setup-venv installs
them into .venv). `--endpoint` defaults to http://127.0.0.1:4318.
"""

import argparse
import random
import time

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

# service: (model, calls per second, mean latency s, error rate, input tokens, output tokens)
SERVICES = {
    "support-agent": ("gpt-4o", 6, 0.9, 0.01, 1200, 300),
    "rag-worker": ("claude-sonnet-4", 4, 1.4, 0.005, 6000, 250),
    "checkout-agent": ("gpt-4o-mini", 10, 0.35, 0.01, 600, 120),
    "code-review-bot": ("o3", 1, 4.0, 0.02, 9000, 1500),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default="http://127.0.0.1:4318")
    ap.add_argument("--seconds", type=float, default=240)
    ap.add_argument("--incident-at", type=float, default=0.6, help="fraction of the run when the incident starts")
    args = ap.parse_args()
    rng = random.Random(7)
    providers = {}
    for name in SERVICES:
        p = TracerProvider(resource=Resource.create({"service.name": name}))
        p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{args.endpoint}/v1/traces"),
                                                schedule_delay_millis=500))
        providers[name] = p
    start = time.time()
    while time.time() - start < args.seconds:
        tick = time.time()
        incident = tick - start > args.seconds * args.incident_at
        for name, (model, rate, latency, errors, tin, tout) in SERVICES.items():
            tracer = providers[name].get_tracer("dashboard-demo")
            if incident and name == "rag-worker":
                latency *= 3
            if incident and name == "checkout-agent":
                errors = 0.25
            for _ in range(rng.randint(rate // 2 + 1, rate + rate // 2 + 1)):
                dur = max(0.02, rng.lognormvariate(0, 0.25) * latency)
                end_ns = time.time_ns()
                span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, start_time=end_ns - int(dur * 1e9),
                                         attributes={
                                             "gen_ai.operation.name": "chat",
                                             "gen_ai.request.model": model,
                                             "gen_ai.usage.input_tokens": int(tin * rng.uniform(0.5, 1.5)),
                                             "gen_ai.usage.output_tokens": int(tout * rng.uniform(0.5, 1.5)),
                                         })
                if rng.random() < errors:
                    span.set_status(Status(StatusCode.ERROR, "provider returned 529 overloaded"))
                span.end(end_time=end_ns)
        time.sleep(max(0.0, 1.0 - (time.time() - tick)))
    for p in providers.values():
        p.shutdown()


if __name__ == "__main__":
    main()
