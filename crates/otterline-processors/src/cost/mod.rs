//! The `cost` processor: what each call cost, in USD, written onto the span.
//!
//! LLM calls are priced from their token usage and model with a price table:
//! Otterline's embedded table (`pipelines/prices.yaml`), overridden entry by entry by
//! `price_table` (Otterline's YAML format, or LiteLLM's
//! `model_prices_and_context_window.json` as is). Other calls (vector stores, tools,
//! storage) are priced by `rules` that match the span name and attributes and charge
//! per call, per second of duration, and per byte of an attribute.
//!
//! Per the GenAI conventions, input tokens include cached tokens, so an LLM call costs
//! the uncached input tokens (`input − cache_read − cache_creation`) at the input price,
//! cache reads and cache writes at their prices, and the output tokens at the output
//! price; when the table has a reasoning price, reasoning tokens (part of the output
//! tokens) are charged at it. Missing cache prices fall back to the input price.
//!
//! A span with token usage whose model is not in the table gets no invented price: it is
//! marked `otterline.cost.unpriced = true`, counted (`unpriced_spans`), and the log names
//! the model. `gen_ai.client.token.usage` histograms (input and output token types, with a
//! model attribute) are priced too, as a derived `otterline.token.cost` sum; see
//! `docs/metrics.md` for what is and is not priced there.

mod prices;
mod pricing;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use otterline_core::component::{BuildContext, Processor, ProcessorFactory};
use otterline_core::config::ConfigError;
use otterline_core::health::ComponentHealth;
use otterline_core::pdata::common::{any_value, AnyValue, KeyValue};
use otterline_core::pdata::metrics::{metric, Metric, NumberDataPoint, Sum};
use otterline_core::pdata::trace::Span;
use otterline_core::Batch;

use otterline_model::attrs::{attr, attr_f64, attr_str};
use otterline_model::names;

pub use prices::{candidates, Price, PriceTable, DEFAULT_PRICES};
pub use pricing::{llm_cost, model, tokens, Tokens};

pub const ATTR_MODEL: &str = names::cost::MODEL;
pub const ATTR_CATEGORY: &str = names::cost::CATEGORY;
pub const ATTR_UNPRICED: &str = names::cost::UNPRICED;

/// `cost.rules[]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// Lands in `otterline.cost.category` (api, compute, storage, network, …).
    pub category: String,
    /// Regex the span name must match.
    #[serde(default)]
    pub span_name: Option<String>,
    /// Attribute values that must match: a literal, or a regex written `re:…`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub per_call: f64,
    #[serde(default)]
    pub per_second: f64,
    #[serde(default)]
    pub per_byte: Option<PerByte>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerByte {
    /// The attribute that holds the byte count (e.g. `http.response.body.size`).
    pub attribute: String,
    pub usd: f64,
}

#[derive(Debug)]
enum Matcher {
    Literal(String),
    Regex(Regex),
}

#[derive(Debug)]
struct Rule {
    category: String,
    span_name: Option<Regex>,
    attributes: Vec<(String, Matcher)>,
    per_call: f64,
    per_second: f64,
    per_byte: Option<PerByte>,
}

impl Rule {
    fn matches(&self, span: &Span) -> bool {
        if let Some(re) = &self.span_name {
            if !re.is_match(&span.name) {
                return false;
            }
        }
        self.attributes.iter().all(|(k, m)| match attr(&span.attributes, k) {
            Some(v) => {
                let s = otterline_core::pdata::value_text(v);
                match m {
                    Matcher::Literal(l) => &s == l,
                    Matcher::Regex(re) => re.is_match(&s),
                }
            }
            None => false,
        })
    }

    fn cost(&self, span: &Span) -> f64 {
        let secs = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e9;
        let bytes =
            self.per_byte.as_ref().map_or(0.0, |b| attr_f64(&span.attributes, &b.attribute).unwrap_or(0.0) * b.usd);
        self.per_call + self.per_second * secs + bytes
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// A price table file (YAML or JSON; Otterline's or LiteLLM's format). Its entries
    /// override the embedded table's.
    pub price_table: Option<PathBuf>,
    /// Start from the embedded table (default true).
    pub use_default_prices: bool,
    /// The span attribute that receives the cost in USD.
    pub attribute: String,
    pub rules: Vec<RuleConfig>,
}

impl Default for CostConfig {
    fn default() -> Self {
        CostConfig {
            price_table: None,
            use_default_prices: true,
            attribute: names::attr::GEN_AI_USAGE_COST.into(),
            rules: Vec::new(),
        }
    }
}

pub struct CostProcessorFactory;

impl ProcessorFactory for CostProcessorFactory {
    fn type_name(&self) -> &'static str {
        "cost"
    }
    fn description(&self) -> &'static str {
        "USD cost per span from token usage and a price table (LiteLLM format accepted) and per-call/second/byte rules"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
        let cfg: CostConfig = ctx.parse()?;
        let mut table = if cfg.use_default_prices {
            PriceTable::parse("<embedded pipelines/prices.yaml>", DEFAULT_PRICES)?
        } else {
            PriceTable::default()
        };
        if let Some(path) = &cfg.price_table {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ctx.error("price_table", format!("cannot read price table {}: {e}", path.display())))?;
            let t = PriceTable::parse(&path.display().to_string(), &text).map_err(|e| {
                if e.mark.is_some() {
                    e
                } else {
                    ctx.error("price_table", e.message)
                }
            })?;
            if t.is_empty() {
                return Err(ctx.error(
                    "price_table",
                    format!(
                        "{} holds no model with both input_cost_per_token and output_cost_per_token",
                        path.display()
                    ),
                ));
            }
            table.extend(t);
        }
        if cfg.attribute.is_empty() {
            return Err(ctx.error("attribute", "must not be empty"));
        }
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let key = format!("rules[{i}]");
            let rx =
                |p: &str| Regex::new(p).map_err(|e| ctx.error("rules", format!("{key}: invalid regex {p:?}: {e}")));
            if r.span_name.is_none() && r.attributes.is_empty() {
                return Err(
                    ctx.error("rules", format!("{key} ({}): give `span_name` and/or `attributes` to match", r.name))
                );
            }
            rules.push(Rule {
                category: r.category.clone(),
                span_name: r.span_name.as_deref().map(rx).transpose()?,
                attributes: r
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            match v.strip_prefix("re:") {
                                Some(p) => Matcher::Regex(rx(p)?),
                                None => Matcher::Literal(v.clone()),
                            },
                        ))
                    })
                    .collect::<Result<_, ConfigError>>()?,
                per_call: r.per_call,
                per_second: r.per_second,
                per_byte: r.per_byte.clone(),
            });
        }
        Ok(Box::new(CostProcessor {
            table,
            attribute: cfg.attribute,
            rules,
            memo: HashMap::new(),
            health: None,
            warned: HashMap::new(),
        }))
    }
}

pub struct CostProcessor {
    table: PriceTable,
    attribute: String,
    rules: Vec<Rule>,
    /// Model name → lookup result, so that normalisation and patterns run once per model.
    memo: HashMap<String, Option<Arc<Price>>>,
    health: Option<Arc<ComponentHealth>>,
    /// Unpriced spans per model, for the log.
    warned: HashMap<String, u64>,
}

fn set_attr(attrs: &mut Vec<KeyValue>, key: &str, value: any_value::Value) {
    let v = Some(AnyValue { value: Some(value) });
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = v,
        None => attrs.push(KeyValue { key: key.to_string(), value: v, ..Default::default() }),
    }
}

/// What happened to the spans of one batch.
#[derive(Default)]
struct Tally {
    priced: u64,
    unpriced: u64,
    ruled: u64,
}

impl CostProcessor {
    fn price(&mut self, model: &str) -> Option<Arc<Price>> {
        if let Some(p) = self.memo.get(model) {
            return p.clone();
        }
        let p = self.table.lookup(model);
        if self.memo.len() > 10_000 {
            self.memo.clear();
        }
        self.memo.insert(model.to_string(), p.clone());
        p
    }

    fn price_span(&mut self, span: &mut Span, tally: &mut Tally) {
        let mut cost = None;
        let mut category: Option<&str> = None;
        if let Some(t) = tokens(&span.attributes) {
            // The memo is probed with the borrowed name: no allocation per span.
            let priced = model(&span.attributes).and_then(|m| self.price(m));
            match priced {
                Some(p) => {
                    cost = Some(llm_cost(&p, &t));
                    category = Some("llm");
                    set_attr(&mut span.attributes, ATTR_MODEL, any_value::Value::StringValue(p.name.clone()));
                    tally.priced += 1;
                }
                None => {
                    set_attr(&mut span.attributes, ATTR_UNPRICED, any_value::Value::BoolValue(true));
                    tally.unpriced += 1;
                    let m = model(&span.attributes).unwrap_or("(no model attribute)").to_string();
                    let n = self.warned.entry(m.clone()).or_insert(0);
                    *n += 1;
                    if *n == 1 || n.is_power_of_two() {
                        tracing::warn!(model = %m, spans = *n, "cost: model not in the price table; spans are marked otterline.cost.unpriced (add it to price_table)");
                    }
                }
            }
        }
        if let Some(rule) = self.rules.iter().find(|r| r.matches(span)) {
            cost = Some(cost.unwrap_or(0.0) + rule.cost(span));
            category.get_or_insert(&rule.category);
            tally.ruled += 1;
        }
        if let Some(c) = cost {
            set_attr(&mut span.attributes, &self.attribute, any_value::Value::DoubleValue(c));
        }
        if let Some(c) = category {
            set_attr(&mut span.attributes, ATTR_CATEGORY, any_value::Value::StringValue(c.to_string()));
        }
    }

    /// Prices `gen_ai.client.token.usage` histograms into `otterline.token.cost` sums.
    fn price_metrics(&mut self, metrics: &mut Vec<Metric>) {
        let mut derived = Vec::new();
        for m in metrics.iter() {
            if m.name != names::metric::GEN_AI_TOKEN_USAGE {
                continue;
            }
            let Some(metric::Data::Histogram(h)) = &m.data else { continue };
            let mut points = Vec::new();
            for p in &h.data_points {
                let Some(sum) = p.sum else { continue };
                let Some(model) = model(&p.attributes).map(str::to_string) else { continue };
                let Some(price) = self.price(&model) else { continue };
                let per_token = match attr_str(&p.attributes, names::attr::GEN_AI_TOKEN_TYPE) {
                    Some("input") => price.input,
                    Some("output") => price.output,
                    _ => continue,
                };
                let mut attributes = p.attributes.clone();
                set_attr(&mut attributes, ATTR_MODEL, any_value::Value::StringValue(price.name.clone()));
                points.push(NumberDataPoint {
                    attributes,
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    value: Some(otterline_core::pdata::metrics::number_data_point::Value::AsDouble(sum * per_token)),
                    ..Default::default()
                });
            }
            if !points.is_empty() {
                derived.push(Metric {
                    name: names::cost::TOKEN_COST_METRIC.into(),
                    description: "USD cost of the tokens in gen_ai.client.token.usage".into(),
                    unit: "USD".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: points,
                        aggregation_temporality: h.aggregation_temporality,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                });
            }
        }
        metrics.append(&mut derived);
    }
}

impl Processor for CostProcessor {
    fn attach(&mut self, health: Arc<ComponentHealth>) {
        self.health = Some(health);
    }

    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        match &mut batch {
            Batch::Traces(r) => {
                let mut tally = Tally::default();
                for rs in &mut r.resource_spans {
                    for ss in &mut rs.scope_spans {
                        for span in &mut ss.spans {
                            self.price_span(span, &mut tally);
                        }
                    }
                }
                if let Some(h) = &self.health {
                    if tally.priced > 0 {
                        h.add_extra("priced_spans", tally.priced);
                    }
                    if tally.unpriced > 0 {
                        h.add_extra("unpriced_spans", tally.unpriced);
                    }
                    if tally.ruled > 0 {
                        h.add_extra("rule_priced_spans", tally.ruled);
                    }
                }
            }
            Batch::Metrics(r) => {
                for rm in &mut r.resource_metrics {
                    for sm in &mut rm.scope_metrics {
                        self.price_metrics(&mut sm.metrics);
                    }
                }
            }
            Batch::Logs(_) => {}
        }
        out.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::config::yaml;
    use otterline_core::config::Mark;
    use otterline_core::pdata::trace::{ResourceSpans, ScopeSpans};
    use otterline_core::pdata::ExportTraceServiceRequest;
    use otterline_core::ComponentId;

    fn build(yaml_text: &str) -> Box<dyn Processor> {
        let node = yaml::parse("t.yaml", yaml_text).unwrap();
        let id = ComponentId::parse("cost").unwrap();
        let mark = Mark { file: "t.yaml".into(), line: 1, col: 1 };
        CostProcessorFactory
            .build(&BuildContext { id: &id, config: &node, path: "processors.cost".into(), mark: &mark })
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }
    fn i(v: i64) -> any_value::Value {
        any_value::Value::IntValue(v)
    }

    fn span(attrs: &[(&str, any_value::Value)], secs: u64) -> Span {
        Span {
            name: "chat".into(),
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + secs * 1_000_000_000,
            attributes: attrs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: Some(AnyValue { value: Some(v.clone()) }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn run(p: &mut Box<dyn Processor>, sp: Span) -> Span {
        let batch = Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![sp], ..Default::default() }],
                ..Default::default()
            }],
        });
        let mut out = Vec::new();
        p.process(batch, &mut out);
        let Some(Batch::Traces(r)) = out.pop() else { panic!() };
        r.resource_spans[0].scope_spans[0].spans[0].clone()
    }

    fn cost_of(sp: &Span) -> Option<f64> {
        attr_f64(&sp.attributes, "gen_ai.usage.cost")
    }

    #[test]
    fn llm_prices_by_hand() {
        let mut p = build("{}");
        // (attributes, expected USD, expected table entry)
        type Case<'a> = (Vec<(&'a str, any_value::Value)>, f64, &'a str);
        let cases: Vec<Case> = vec![
            // gpt-4o: 600 uncached × 2.5e-6 + 400 cached × 1.25e-6 + 200 out × 1e-5
            (
                vec![
                    ("gen_ai.request.model", s("gpt-4o")),
                    ("gen_ai.usage.input_tokens", i(1000)),
                    ("gen_ai.usage.cache_read.input_tokens", i(400)),
                    ("gen_ai.usage.output_tokens", i(200)),
                ],
                0.004,
                "gpt-4o",
            ),
            // the response model wins; provider prefix and date are normalised away:
            // 500 × 3e-6 + 1000 × 3e-7 + 500 × 3.75e-6 + 100 × 1.5e-5
            (
                vec![
                    ("gen_ai.request.model", s("claude-sonnet-4")),
                    ("gen_ai.response.model", s("anthropic/claude-sonnet-4-20250514")),
                    ("gen_ai.usage.input_tokens", i(2000)),
                    ("gen_ai.usage.cache_read.input_tokens", i(1000)),
                    ("gen_ai.usage.cache_creation.input_tokens", i(500)),
                    ("gen_ai.usage.output_tokens", i(100)),
                ],
                0.005175,
                "claude-sonnet-4",
            ),
            // legacy gen_ai names, dated model: 100 × 1.5e-7 + 50 × 6e-7
            (
                vec![
                    ("gen_ai.request.model", s("gpt-4o-mini-2024-07-18")),
                    ("gen_ai.usage.prompt_tokens", i(100)),
                    ("gen_ai.usage.completion_tokens", i(50)),
                ],
                0.000045,
                "gpt-4o-mini",
            ),
            // llm.* names: 1000 × 2e-6 + 1000 × 8e-6
            (
                vec![
                    ("llm.request.model", s("gpt-4.1")),
                    ("llm.usage.prompt_tokens", i(1000)),
                    ("llm.usage.completion_tokens", i(1000)),
                ],
                0.01,
                "gpt-4.1",
            ),
            // an alias after date stripping, tokens as strings
            (
                vec![
                    ("gen_ai.request.model", s("claude-3-5-sonnet-20241022")),
                    ("gen_ai.usage.input_tokens", s("1000")),
                    ("gen_ai.usage.output_tokens", i(0)),
                ],
                0.003,
                "claude-sonnet-4",
            ),
            // Bedrock id: vendor prefix and -v1:0 suffix; no cache prices used
            (
                vec![
                    ("gen_ai.request.model", s("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0")),
                    ("gen_ai.usage.input_tokens", i(10_000)),
                    ("gen_ai.usage.output_tokens", i(1000)),
                ],
                0.012,
                "claude-3-5-haiku",
            ),
            // a pattern entry
            (
                vec![
                    ("gen_ai.request.model", s("mistral-large-2411")),
                    ("gen_ai.usage.input_tokens", i(1000)),
                    ("gen_ai.usage.output_tokens", i(1000)),
                ],
                0.008,
                "mistral-large",
            ),
        ];
        for (attrs, want, entry) in cases {
            let out = run(&mut p, span(&attrs, 1));
            let got = cost_of(&out).unwrap_or_else(|| panic!("no cost for {attrs:?}"));
            assert!((got - want).abs() < 1e-12, "{attrs:?}: {got} != {want}");
            assert_eq!(attr_str(&out.attributes, ATTR_MODEL), Some(entry));
            assert_eq!(attr_str(&out.attributes, ATTR_CATEGORY), Some("llm"));
        }
    }

    #[test]
    fn unknown_models_are_marked_not_priced() {
        let mut p = build("{}");
        let out =
            run(&mut p, span(&[("gen_ai.request.model", s("llama-9-ultra")), ("gen_ai.usage.input_tokens", i(10))], 1));
        assert_eq!(cost_of(&out), None);
        assert_eq!(attr(&out.attributes, ATTR_UNPRICED), Some(&any_value::Value::BoolValue(true)));
        // No tokens: nothing to do.
        let out = run(&mut p, span(&[("gen_ai.request.model", s("gpt-4o"))], 1));
        assert_eq!(out.attributes.len(), 1);
    }

    #[test]
    fn litellm_table_overrides_and_reasoning_price() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model_prices_and_context_window.json");
        std::fs::write(
            &file,
            r#"{
              "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0},
              "gpt-4o": {"max_tokens": 16384, "input_cost_per_token": 5e-06, "output_cost_per_token": 1.5e-05, "litellm_provider": "openai", "mode": "chat", "supports_vision": true},
              "my-reasoner": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "output_cost_per_reasoning_token": 4e-06},
              "image-model": {"output_cost_per_image": 0.04}
            }"#,
        )
        .unwrap();
        let mut p = build(&format!("price_table: \"{}\"", file.display()));
        let out = run(
            &mut p,
            span(
                &[
                    ("gen_ai.request.model", s("gpt-4o")),
                    ("gen_ai.usage.input_tokens", i(100)),
                    ("gen_ai.usage.output_tokens", i(100)),
                ],
                1,
            ),
        );
        assert!((cost_of(&out).unwrap() - 0.002).abs() < 1e-12);
        // 1000 × 1e-6 + (300 − 100) × 2e-6 + 100 × 4e-6
        let out = run(
            &mut p,
            span(
                &[
                    ("gen_ai.request.model", s("my-reasoner")),
                    ("gen_ai.usage.input_tokens", i(1000)),
                    ("gen_ai.usage.output_tokens", i(300)),
                    ("gen_ai.usage.reasoning.output_tokens", i(100)),
                ],
                1,
            ),
        );
        assert!((cost_of(&out).unwrap() - 0.0018).abs() < 1e-12);
        // Entries of the embedded table not in the file remain.
        let out = run(&mut p, span(&[("gen_ai.request.model", s("o3")), ("gen_ai.usage.input_tokens", i(1000))], 1));
        assert!((cost_of(&out).unwrap() - 0.002).abs() < 1e-12);
    }

    #[test]
    fn non_llm_rules() {
        let mut p = build(
            "rules:\n  - name: vector-db\n    category: storage\n    span_name: '^pinecone\\.'\n    attributes: {db.system: pinecone, db.operation: 're:^(query|upsert)$'}\n    per_call: 0.0001\n    per_second: 0.01\n    per_byte: {attribute: db.response.bytes, usd: 0.000000001}\n",
        );
        let mut sp =
            span(&[("db.system", s("pinecone")), ("db.operation", s("query")), ("db.response.bytes", i(1000))], 2);
        sp.name = "pinecone.query".into();
        let out = run(&mut p, sp.clone());
        // 0.0001 + 2 s × 0.01 + 1000 × 1e-9
        assert!((cost_of(&out).unwrap() - 0.020101).abs() < 1e-12);
        assert_eq!(attr_str(&out.attributes, ATTR_CATEGORY), Some("storage"));
        sp.name = "redis.get".into();
        assert_eq!(cost_of(&run(&mut p, sp)), None);
    }

    #[test]
    fn bad_config_is_reported() {
        let node =
            yaml::parse("t.yaml", "rules:\n  - {name: x, category: api, span_name: '(', per_call: 1}\n").unwrap();
        let id = ComponentId::parse("cost").unwrap();
        let mark = Mark { file: "t.yaml".into(), line: 1, col: 1 };
        let err = CostProcessorFactory
            .build(&BuildContext { id: &id, config: &node, path: "processors.cost".into(), mark: &mark })
            .err()
            .unwrap();
        assert!(err.to_string().contains("rules[0]: invalid regex \"(\""), "{err}");
        let node = yaml::parse("t.yaml", "price_table: /nonexistent.json\n").unwrap();
        let err = CostProcessorFactory
            .build(&BuildContext { id: &id, config: &node, path: "processors.cost".into(), mark: &mark })
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("t.yaml:1:14: processors.cost.price_table: cannot read price table /nonexistent.json"),
            "{err}"
        );
    }

    #[test]
    fn token_usage_histograms_are_priced() {
        use otterline_core::pdata::metrics::{Histogram, HistogramDataPoint, ResourceMetrics, ScopeMetrics};
        let mut p = build("{}");
        let point = |ty: &str, sum: f64| HistogramDataPoint {
            attributes: vec![
                KeyValue {
                    key: "gen_ai.token.type".into(),
                    value: Some(AnyValue { value: Some(s(ty)) }),
                    ..Default::default()
                },
                KeyValue {
                    key: "gen_ai.request.model".into(),
                    value: Some(AnyValue { value: Some(s("gpt-4o")) }),
                    ..Default::default()
                },
            ],
            count: 3,
            sum: Some(sum),
            ..Default::default()
        };
        let m = Metric {
            name: "gen_ai.client.token.usage".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![point("input", 1000.0), point("output", 100.0)],
                aggregation_temporality: 1,
            })),
            ..Default::default()
        };
        let batch = Batch::Metrics(otterline_core::pdata::ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![m], ..Default::default() }],
                ..Default::default()
            }],
        });
        let mut out = Vec::new();
        p.process(batch, &mut out);
        let Some(Batch::Metrics(r)) = out.pop() else { panic!() };
        let cost =
            r.resource_metrics[0].scope_metrics[0].metrics.iter().find(|m| m.name == "otterline.token.cost").unwrap();
        let Some(metric::Data::Sum(sum)) = &cost.data else { panic!() };
        let values: Vec<f64> = sum
            .data_points
            .iter()
            .map(|p| match p.value {
                Some(otterline_core::pdata::metrics::number_data_point::Value::AsDouble(d)) => d,
                _ => f64::NAN,
            })
            .collect();
        assert!((values[0] - 0.0025).abs() < 1e-12 && (values[1] - 0.001).abs() < 1e-12, "{values:?}");
    }

    #[test]
    fn normalisation_candidates() {
        assert_eq!(
            candidates("OpenAI/GPT-4o-2024-08-06"),
            vec!["openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "gpt-4o"]
        );
        assert_eq!(candidates("claude-3-5-sonnet@20240620").last().unwrap(), "claude-3-5-sonnet");
        assert_eq!(candidates("us.anthropic.claude-3-5-haiku-20241022-v1:0").last().unwrap(), "claude-3-5-haiku");
    }

    #[test]
    fn current_names_win_over_legacy_in_any_order_and_bad_values_fall_back() {
        let sp = span(
            &[
                ("llm.usage.prompt_tokens", i(1)),
                ("gen_ai.usage.prompt_tokens", i(2)),
                ("gen_ai.usage.input_tokens", i(3)),
                ("gen_ai.usage.output_tokens", s("not a number")),
                ("gen_ai.usage.completion_tokens", s(" 7 ")),
                ("gen_ai.usage.reasoning_tokens", i(4)),
                ("gen_ai.usage.reasoning.output_tokens", i(5)),
                ("gen_ai.usage.cache_read_input_tokens", any_value::Value::DoubleValue(2.0)),
            ],
            1,
        );
        let t = tokens(&sp.attributes).unwrap();
        assert_eq!(t, Tokens { input: 3, output: 7, cache_read: 2, cache_creation: 0, reasoning: 5 });
        assert_eq!(tokens(&span(&[("gen_ai.usage.total_tokens", i(9))], 1).attributes), None);
        // the response model wins; an empty one is skipped
        let sp = span(&[("gen_ai.request.model", s("gpt-4o")), ("gen_ai.response.model", s("gpt-4o-2024-08-06"))], 1);
        assert_eq!(model(&sp.attributes), Some("gpt-4o-2024-08-06"));
        let sp = span(&[("gen_ai.response.model", s("")), ("llm.request.model", s("claude"))], 1);
        assert_eq!(model(&sp.attributes), Some("claude"));
        assert_eq!(model(&span(&[("gen_ai.response.model", s(""))], 1).attributes), None);
    }
}
