//! Names of attributes, metrics, scopes and events, defined once. Values follow the
//! OpenTelemetry GenAI semantic conventions where they exist (`gen_ai.*`); Otterline's own
//! are under `otterline.*`. `docs/metrics.md` documents the metrics.

/// Resource and span attributes from the OpenTelemetry conventions.
pub mod attr {
    pub const SERVICE_NAME: &str = "service.name";
    pub const HOST_NAME: &str = "host.name";
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// The cost of a call in USD, written by the `cost` processor.
    pub const GEN_AI_USAGE_COST: &str = "gen_ai.usage.cost";
    /// The status dimension of `aggregate` points (`OK`, `ERROR`, `UNSET`).
    pub const OTEL_STATUS_CODE: &str = "otel.status_code";
    /// Marks the one series that takes new series beyond a cardinality limit.
    pub const OTEL_METRIC_OVERFLOW: &str = "otel.metric.overflow";
    /// On `aggregate` points: whether the series' spans are entry spans of their service
    /// (kind SERVER or CONSUMER, or a root span). Service-level RED counts only these, so a
    /// `chat` span nested in an HTTP server span is not a second call; points without it
    /// (written before it existed) count as entry spans.
    pub const OTTERLINE_SPAN_ENTRY: &str = "otterline.span.entry";
}

/// The `aggregate` processor's metric family (scope [`scope::AGGREGATE`]).
pub mod metric {
    pub const CALLS: &str = "otterline.operation.calls";
    pub const ERRORS: &str = "otterline.operation.errors";
    pub const DURATION_SUMMARY: &str = "otterline.operation.duration.summary";
    pub const DURATION_MEAN: &str = "otterline.operation.duration.mean";
    pub const THROUGHPUT: &str = "otterline.operation.throughput";
    pub const TOKEN_USAGE: &str = "otterline.token.usage";
    pub const COST: &str = "otterline.operation.cost";
    /// Calls the `cost` processor could not price (their spend is in no cost figure).
    pub const UNPRICED_CALLS: &str = "otterline.operation.unpriced_calls";
    pub const QUALITY_SCORE: &str = "otterline.quality.score";
    pub const USER_SATISFACTION: &str = "otterline.user.satisfaction";
    /// The GenAI conventions' client histograms, also written by `aggregate`.
    pub const GEN_AI_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    pub const GEN_AI_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// The `health` processor's scores.
    pub const HEALTH_SCORE: &str = "otterline.health.score";
    pub const HEALTH_SUBSCORE: &str = "otterline.health.subscore";
}

/// Attributes the `cost` processor writes on spans, and its derived metric.
pub mod cost {
    /// The price-table entry a span was priced with.
    pub const MODEL: &str = "otterline.cost.model";
    /// The category of a rule-priced call (api, compute, storage, …).
    pub const CATEGORY: &str = "otterline.cost.category";
    /// `true` on a span with token usage whose model has no price.
    pub const UNPRICED: &str = "otterline.cost.unpriced";
    /// USD of `gen_ai.client.token.usage` histograms, as a sum.
    pub const TOKEN_COST_METRIC: &str = "otterline.token.cost";
}

/// Instrumentation scopes of what Otterline derives.
pub mod scope {
    pub const AGGREGATE: &str = "otterline.aggregate";
    pub const ANOMALY: &str = "otterline.anomaly";
    pub const HEALTH: &str = "otterline.health";
}

/// `event.name` of anomaly and budget events.
pub mod event {
    pub const ANOMALY: &str = "otterline.anomaly";
    pub const ANOMALY_RESOLVED: &str = "otterline.anomaly.resolved";
}

/// Attributes of anomaly and budget events ([`crate::event::AnomalyEvent`]).
pub mod anomaly {
    pub const TYPE: &str = "otterline.anomaly.type";
    pub const SEVERITY: &str = "otterline.anomaly.severity";
    pub const STATE: &str = "otterline.anomaly.state";
    pub const SERIES: &str = "otterline.anomaly.series";
    pub const METRIC: &str = "otterline.anomaly.metric";
    pub const EPISODE_ID: &str = "otterline.anomaly.episode_id";
    pub const OBSERVED: &str = "otterline.anomaly.observed";
    pub const BASELINE: &str = "otterline.anomaly.baseline";
    pub const THRESHOLD: &str = "otterline.anomaly.threshold";
    pub const SCORE: &str = "otterline.anomaly.score";
    pub const STARTED_AT: &str = "otterline.anomaly.started_at";
    pub const SUGGESTION: &str = "otterline.anomaly.suggestion";
    pub const RESOLUTION: &str = "otterline.anomaly.resolution";
    pub const DURATION_WINDOWS: &str = "otterline.anomaly.duration_windows";
    /// The prefix every attribute above shares.
    pub const PREFIX: &str = "otterline.anomaly.";
}

/// Dimensions of budget events (beside the [`anomaly`] attributes).
pub mod budget {
    pub const NAME: &str = "otterline.budget.name";
    pub const METRIC: &str = "otterline.budget.metric";
    pub const SCOPE: &str = "otterline.budget.scope";
    pub const MODE: &str = "otterline.budget.mode";
}

/// Point attributes of the `health` processor's metrics.
pub mod health {
    pub const STATUS: &str = "otterline.health.status";
    pub const FACTOR: &str = "otterline.health.factor";
}
