//! Pricing one LLM call: its token usage and model from current and legacy GenAI attribute
//! names, and its USD cost under a [`Price`].

use otterline_core::pdata::common::{any_value, KeyValue};
use otterline_model::attrs::{value_i64, value_of};

use super::prices::Price;

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tokens {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_creation: i64,
    pub reasoning: i64,
}

/// Where a token-count attribute goes: the [`Tokens`] field (0 input, 1 output, 2 cache read,
/// 3 cache creation, 4 reasoning) and its rank among the names for that field (0 = current
/// semantic conventions, higher = legacy; the lowest rank present wins).
fn token_slot(key: &str) -> Option<(usize, u8)> {
    Some(match key {
        "gen_ai.usage.input_tokens" => (0, 0),
        "gen_ai.usage.prompt_tokens" => (0, 1),
        "llm.usage.prompt_tokens" => (0, 2),
        "gen_ai.usage.output_tokens" => (1, 0),
        "gen_ai.usage.completion_tokens" => (1, 1),
        "llm.usage.completion_tokens" => (1, 2),
        "gen_ai.usage.cache_read.input_tokens" => (2, 0),
        "gen_ai.usage.cache_read_input_tokens" => (2, 1),
        "gen_ai.usage.cache_creation.input_tokens" => (3, 0),
        "gen_ai.usage.cache_creation_input_tokens" => (3, 1),
        "gen_ai.usage.reasoning.output_tokens" => (4, 0),
        "gen_ai.usage.reasoning_tokens" => (4, 1),
        _ => return None,
    })
}

/// Token usage from current and legacy attribute names; `None` when the span has neither an
/// input nor an output count. One pass over the attributes: this runs for every span.
pub fn tokens(attrs: &[KeyValue]) -> Option<Tokens> {
    let mut best: [Option<(u8, i64)>; 5] = [None; 5];
    for kv in attrs {
        let Some((slot, rank)) = token_slot(&kv.key) else { continue };
        if best[slot].is_some_and(|(r, _)| r <= rank) {
            continue;
        }
        if let Some(n) = value_of(kv).and_then(value_i64) {
            best[slot] = Some((rank, n));
        }
    }
    if best[0].is_none() && best[1].is_none() {
        return None;
    }
    let get = |i: usize| best[i].map_or(0, |(_, n)| n);
    Some(Tokens { input: get(0), output: get(1), cache_read: get(2), cache_creation: get(3), reasoning: get(4) })
}

/// The model a span used: the response model, else the request model (empty values are
/// skipped). One pass over the attributes.
pub fn model(attrs: &[KeyValue]) -> Option<&str> {
    let mut best: Option<(u8, &str)> = None;
    for kv in attrs {
        let rank = match kv.key.as_str() {
            "gen_ai.response.model" => 0,
            "gen_ai.request.model" => 1,
            "llm.response.model" => 2,
            "llm.request.model" => 3,
            _ => continue,
        };
        if best.is_some_and(|(r, _)| r <= rank) {
            continue;
        }
        if let Some(any_value::Value::StringValue(m)) = value_of(kv) {
            if !m.is_empty() {
                best = Some((rank, m));
            }
        }
    }
    best.map(|(_, m)| m)
}

/// The USD cost of a call.
pub fn llm_cost(p: &Price, t: &Tokens) -> f64 {
    let cache_read = t.cache_read.max(0) as f64;
    let cache_creation = t.cache_creation.max(0) as f64;
    let uncached = (t.input - t.cache_read - t.cache_creation).max(0) as f64;
    let (plain_output, reasoning) = match p.reasoning {
        Some(_) => ((t.output - t.reasoning).max(0) as f64, t.reasoning.clamp(0, t.output.max(0)) as f64),
        None => (t.output.max(0) as f64, 0.0),
    };
    uncached * p.input
        + cache_read * p.cache_read.unwrap_or(p.input)
        + cache_creation * p.cache_creation.unwrap_or(p.input)
        + plain_output * p.output
        + reasoning * p.reasoning.unwrap_or(p.output)
}
