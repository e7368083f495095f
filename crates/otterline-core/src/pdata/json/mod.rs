//! The OTLP/JSON mapping, both ways.
//!
//! Follows <https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>:
//! trace and span ids are hex strings, enums are integers, 64-bit integers are
//! written as strings. The decoder is lenient where the spec asks it to be and
//! where real clients differ: it accepts lowerCamelCase and snake_case keys,
//! 64-bit integers as strings or numbers, enums as integers or their names,
//! `"NaN"`/`"Infinity"` for doubles, and ignores unknown fields. Every decode
//! error names the JSON path of the offending value.
//!
//! The encoder writes straight into a `String` (no intermediate tree) and omits
//! default values, so `encode(decode(x))` is canonical and can be re-posted to
//! any OTLP/HTTP endpoint.

mod decode;
mod encode;
mod value;

pub use decode::{decode, decode_any_value, decode_entity_refs, decode_within, JsonError};
pub use encode::{encode, encode_any_value, encode_entity_refs, encode_into, encode_partial_success};

#[cfg(test)]
mod tests {
    use super::encode::{any_needs_escape, needs_escape};
    use super::*;
    use crate::pdata::common::{any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList};
    use crate::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::pdata::metrics::{
        exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
        summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint,
    };
    use crate::pdata::resource::Resource;
    use crate::pdata::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
    use crate::pdata::{
        Batch, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest, Signal,
    };

    /// A traces batch with one attribute nested `depth` arrays (and kvlists) deep.
    fn nested(depth: usize) -> Batch {
        let mut v = AnyValue { value: Some(any_value::Value::IntValue(7)) };
        for d in 0..depth {
            v = AnyValue {
                value: Some(if d % 2 == 0 {
                    any_value::Value::ArrayValue(ArrayValue { values: vec![v] })
                } else {
                    any_value::Value::KvlistValue(KeyValueList {
                        values: vec![KeyValue { key: "k".into(), value: Some(v), ..Default::default() }],
                    })
                }),
            };
        }
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        attributes: vec![KeyValue { key: "deep".into(), value: Some(v), ..Default::default() }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    /// Whatever nesting protobuf's decoder accepts, OTLP/JSON reads back too (it used to stop
    /// at 39 levels of arrays and 29 of kvlists, so the JSON exporter wrote unreadable lines).
    #[test]
    fn json_reads_back_every_depth_protobuf_accepts() {
        use prost::Message as _;
        let mut deepest = 0;
        for depth in 0..200 {
            let b = nested(depth);
            let Batch::Traces(r) = &b else { unreachable!() };
            if Batch::decode_protobuf(Signal::Traces, &r.encode_to_vec()).is_err() {
                break;
            }
            deepest = depth;
            assert_eq!(decode(Signal::Traces, encode(&b).as_bytes()).unwrap(), b, "depth {depth}");
        }
        assert!(deepest >= 35, "protobuf accepted only {deepest} levels");
    }

    #[test]
    fn escape_scan_agrees_with_the_byte_test_at_every_position() {
        for len in 0..24 {
            for pos in 0..len {
                for b in 0u8..=255 {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    assert_eq!(any_needs_escape(&v), needs_escape(b), "len {len} pos {pos} byte {b}");
                }
            }
        }
        assert!(!any_needs_escape("héllo wörld, no escapes here".as_bytes()));
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn every_any_value() -> Vec<KeyValue> {
        use any_value::Value as V;
        vec![
            kv("s", V::StringValue("a \"quoted\"\n\u{1}é".into())),
            kv("b", V::BoolValue(true)),
            kv("i", V::IntValue(i64::MIN)),
            kv("d", V::DoubleValue(2.5)),
            kv("nan", V::DoubleValue(f64::INFINITY)),
            kv("bytes", V::BytesValue(vec![0, 1, 2, 255])),
            kv(
                "arr",
                V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue { value: Some(V::IntValue(1)) },
                        AnyValue { value: Some(V::StringValue("x".into())) },
                    ],
                }),
            ),
            kv("kv", V::KvlistValue(KeyValueList { values: vec![kv("inner", V::DoubleValue(-0.5))] })),
            KeyValue { key: "empty".into(), value: Some(AnyValue { value: None }), ..Default::default() },
        ]
    }

    fn round_trip(batch: Batch) {
        let json = encode(&batch);
        let back = decode(batch.signal(), json.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(back, batch, "{json}");
    }

    #[test]
    fn traces_round_trip() {
        round_trip(Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: every_any_value(),
                    dropped_attributes_count: 2,
                    entity_refs: vec![],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: (1..=16).collect(),
                        span_id: (1..=8).collect(),
                        parent_span_id: vec![9; 8],
                        trace_state: "a=b".into(),
                        flags: 257,
                        name: "chat gpt-4o".into(),
                        kind: 3,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: u64::MAX,
                        attributes: every_any_value(),
                        events: vec![span::Event {
                            time_unix_nano: 5,
                            name: "ev".into(),
                            attributes: every_any_value(),
                            dropped_attributes_count: 1,
                        }],
                        links: vec![span::Link {
                            trace_id: vec![7; 16],
                            span_id: vec![8; 8],
                            flags: 1,
                            ..Default::default()
                        }],
                        status: Some(Status { message: "boom".into(), code: 2 }),
                        dropped_events_count: 3,
                        dropped_links_count: 4,
                        dropped_attributes_count: 5,
                    }],
                    schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
                }],
                schema_url: String::new(),
            }],
        }));
    }

    #[test]
    fn metrics_round_trip() {
        let point = NumberDataPoint {
            attributes: every_any_value(),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            value: Some(number_data_point::Value::AsInt(-7)),
            exemplars: vec![Exemplar {
                filtered_attributes: vec![],
                time_unix_nano: 3,
                span_id: vec![1; 8],
                trace_id: vec![2; 16],
                value: Some(exemplar::Value::AsDouble(0.25)),
            }],
            flags: 1,
        };
        let metrics = vec![
            Metric {
                name: "g".into(),
                unit: "s".into(),
                data: Some(metric::Data::Gauge(Gauge { data_points: vec![point.clone()] })),
                ..Default::default()
            },
            Metric {
                name: "s".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        value: Some(number_data_point::Value::AsDouble(1e300)),
                        ..point.clone()
                    }],
                    aggregation_temporality: 1,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "h".into(),
                description: "d".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        count: 3,
                        sum: Some(0.0),
                        bucket_counts: vec![1, 0, u64::MAX],
                        explicit_bounds: vec![0.5, 1.0],
                        min: Some(-1.0),
                        max: Some(3.0),
                        time_unix_nano: 9,
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
            Metric {
                name: "e".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        count: 4,
                        scale: -2,
                        zero_count: 1,
                        zero_threshold: 1e-9,
                        positive: Some(Buckets { offset: -3, bucket_counts: vec![1, 2] }),
                        negative: Some(Buckets { offset: 0, bucket_counts: vec![] }),
                        sum: Some(1.5),
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                })),
                metadata: vec![kv("m", any_value::Value::BoolValue(false))],
                ..Default::default()
            },
            Metric {
                name: "sum".into(),
                data: Some(metric::Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        count: 2,
                        sum: 3.5,
                        quantile_values: vec![
                            ValueAtQuantile { quantile: 0.0, value: 1.0 },
                            ValueAtQuantile { quantile: 0.99, value: 2.5 },
                        ],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
            Metric { name: "nodata".into(), ..Default::default() },
        ];
        round_trip(Batch::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: None,
                scope_metrics: vec![ScopeMetrics { scope: None, metrics, schema_url: String::new() }],
                schema_url: String::new(),
            }],
        }));
    }

    #[test]
    fn logs_round_trip_with_every_body_type() {
        let records = every_any_value()
            .into_iter()
            .map(|kv| LogRecord {
                time_unix_nano: 1,
                observed_time_unix_nano: 2,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: kv.value,
                attributes: vec![],
                dropped_attributes_count: 0,
                flags: 1,
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                event_name: "e".into(),
            })
            .collect();
        round_trip(Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs { scope: None, log_records: records, schema_url: String::new() }],
                schema_url: String::new(),
            }],
        }));
    }

    #[test]
    fn lenient_decoding_snake_case_numbers_and_enum_names() {
        let json = r#"{"resource_spans":[{"scope_spans":[{"spans":[{
            "trace_id":"5B8EFFF798038103D269B633813FC60C","span_id":"EEE19B7EC3C1B174",
            "name":"x","kind":"SPAN_KIND_SERVER","start_time_unix_nano":1544712660000000000,
            "endTimeUnixNano":"1544712661000000000","status":{"code":"STATUS_CODE_ERROR"},
            "attributes":[{"key":"n","value":{"int_value":42}},{"key":"d","value":{"doubleValue":"NaN"}}],
            "unknownField":{"ignored":true}}]}]}]}"#;
        let Batch::Traces(t) = decode(Signal::Traces, json.as_bytes()).unwrap() else { panic!() };
        let span = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[0], 0x5b);
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1544712660000000000);
        assert_eq!(span.end_time_unix_nano, 1544712661000000000);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(span.attributes[0].value.as_ref().unwrap().value, Some(any_value::Value::IntValue(42)));
        assert!(
            matches!(span.attributes[1].value.as_ref().unwrap().value, Some(any_value::Value::DoubleValue(d)) if d.is_nan())
        );
    }

    #[test]
    fn decoding_within_a_limit_stops_amplifying_requests_and_passes_ordinary_ones() {
        // 100,000 empty spans: 3 bytes each, a few hundred bytes decoded.
        let spans = vec!["{}"; 100_000].join(",");
        let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
        let e = decode_within(Signal::Traces, body.as_bytes(), 13 * body.len()).unwrap_err();
        assert!(e.is_over_limit(), "{e}");
        assert!(e.to_string().contains("needs more memory than it may take"), "{e}");
        // A document of numbers, stopped while it is parsed.
        let numbers = format!(r#"{{"resourceSpans":[{}]}}"#, vec!["0"; 100_000].join(","));
        assert!(decode_within(Signal::Traces, numbers.as_bytes(), 13 * numbers.len()).unwrap_err().is_over_limit());
        // An ordinary request decodes as without a limit; errors are not over the limit.
        let batch = nested(3);
        let text = encode(&batch);
        assert_eq!(decode_within(Signal::Traces, text.as_bytes(), 13 * text.len()).unwrap(), batch);
        assert!(!decode_within(Signal::Traces, b"{]", 1000).unwrap_err().is_over_limit());
        // Outside decode_within nothing is limited.
        assert!(decode(Signal::Traces, body.as_bytes()).is_ok());
    }

    #[test]
    fn errors_name_the_path() {
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#;
        let err = decode(Signal::Traces, json.as_bytes()).unwrap_err();
        assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0].traceId");
        assert!(err.to_string().contains("invalid hex digit"), "{err}");

        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102"}]}]}]}"#;
        let err = decode(Signal::Traces, json.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("expected 32 hex digits"), "{err}");

        let err = decode(Signal::Logs, b"{\"resourceLogs\":{}}").unwrap_err();
        assert_eq!(err.to_string(), "resourceLogs: expected an array, found an object");

        let err = decode(Signal::Metrics, b"[1,").unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON"), "{err}");

        let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"sum":{"dataPoints":[{"asInt":"1.5"}]}}]}]}]}"#;
        let err = decode(Signal::Metrics, json.as_bytes()).unwrap_err();
        assert_eq!(err.path(), "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].asInt");
    }

    #[test]
    fn partial_success_encoding() {
        assert_eq!(encode_partial_success(Signal::Traces, 0, ""), "{}");
        assert_eq!(
            encode_partial_success(Signal::Logs, 2, "bad ids"),
            r#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"bad ids"}}"#
        );
    }
}
