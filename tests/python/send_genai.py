"""Sends deterministic GenAI spans (OpenTelemetry GenAI conventions) with the Python SDK.

Usage: send_genai.py --endpoint http://127.0.0.1:4317 --t0 NANOS [--count 40]

Span i: model alternates gpt-4o / claude-sonnet-4, starts at t0 + i s, lasts 100 + 37*i ms,
uses 100 + 10*i input tokens (50 of them cached when i % 4 == 0) and 20 + i output tokens,
fails (status ERROR) when i % 10 == 9, and carries quality.score and user.satisfaction.
Prints the spans it sent as JSON.
"""

import argparse
import json
import sys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--t0", type=int, required=True)
    ap.add_argument("--count", type=int, default=40)
    args = ap.parse_args()

    tp = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
    tracer = tp.get_tracer("otterline-genai-test")
    sent = []
    for i in range(args.count):
        model = ["gpt-4o", "claude-sonnet-4"][i % 2]
        start = args.t0 + i * 1_000_000_000
        end = start + (100 + 37 * i) * 1_000_000
        spec = {
            "name": f"chat {model}",
            "model": model,
            "start": start,
            "end": end,
            "input": 100 + 10 * i,
            "cache_read": 50 if i % 4 == 0 else 0,
            "output": 20 + i,
            "error": i % 10 == 9,
            "quality": 0.5 + (i % 5) / 10,
            "satisfaction": 1 if i % 10 == 9 else 4,
        }
        span = tracer.start_span(spec["name"], kind=SpanKind.CLIENT, start_time=start)
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai" if model == "gpt-4o" else "anthropic")
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("gen_ai.usage.input_tokens", spec["input"])
        span.set_attribute("gen_ai.usage.output_tokens", spec["output"])
        if spec["cache_read"]:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", spec["cache_read"])
        span.set_attribute("quality.score", spec["quality"])
        span.set_attribute("user.satisfaction", spec["satisfaction"])
        if spec["error"]:
            span.set_status(Status(StatusCode.ERROR, "provider error"))
        span.end(end_time=end)
        sent.append(spec)
    tp.shutdown()
    json.dump(sent, sys.stdout)


if __name__ == "__main__":
    main()
