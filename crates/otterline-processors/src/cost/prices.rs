//! Price tables: Otterline's YAML format and LiteLLM's JSON, model-name aliases and
//! patterns, and the lookup from a span's model name to a [`Price`].

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

use otterline_core::config::{from_node, yaml, ConfigError};

/// The embedded default price table.
pub const DEFAULT_PRICES: &str = include_str!("../../../../pipelines/prices.yaml");

/// One model's prices (USD per token).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Price {
    /// The table entry this price came from.
    pub name: String,
    pub input: f64,
    pub output: f64,
    pub cache_read: Option<f64>,
    pub cache_creation: Option<f64>,
    pub reasoning: Option<f64>,
}

/// Model name → price, with aliases and regex patterns.
#[derive(Debug, Default, Clone)]
pub struct PriceTable {
    exact: HashMap<String, Arc<Price>>,
    patterns: Vec<(Regex, Arc<Price>)>,
    pub as_of: Option<String>,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl PriceTable {
    /// Parses a table: Otterline's format (`models:` map) or LiteLLM's (a flat map of
    /// model → entry); YAML or JSON. Entries without input and output prices are ignored.
    pub fn parse(name: &str, text: &str) -> Result<PriceTable, ConfigError> {
        let root: Value = if name.ends_with(".json") {
            serde_json::from_str(text)
                .map_err(|e| ConfigError::plain(format!("{name}: invalid JSON price table: {e}")))?
        } else {
            let node = yaml::parse(name, text)?;
            from_node(&node, "")?
        };
        let Value::Object(top) = &root else {
            return Err(ConfigError::plain(format!("{name}: a price table is a map of model names to prices")));
        };
        let as_of = top.get("prices_as_of").and_then(|v| v.as_str()).map(str::to_string);
        let models = match top.get("models") {
            Some(Value::Object(m)) => m,
            _ => top,
        };
        let mut t = PriceTable { as_of, ..Default::default() };
        for (model, entry) in models {
            if model == "sample_spec" || model == "prices_as_of" || !entry.is_object() {
                continue;
            }
            let (Some(input), Some(output)) = (num(entry, "input_cost_per_token"), num(entry, "output_cost_per_token"))
            else {
                continue;
            };
            let price = Arc::new(Price {
                name: model.clone(),
                input,
                output,
                cache_read: num(entry, "cache_read_input_token_cost"),
                cache_creation: num(entry, "cache_creation_input_token_cost"),
                reasoning: num(entry, "output_cost_per_reasoning_token"),
            });
            t.exact.insert(model.to_lowercase(), price.clone());
            if let Some(Value::Array(aliases)) = entry.get("aliases") {
                for a in aliases.iter().filter_map(|a| a.as_str()) {
                    t.exact.insert(a.to_lowercase(), price.clone());
                }
            }
            if let Some(p) = entry.get("pattern").and_then(|p| p.as_str()) {
                let re = Regex::new(p)
                    .map_err(|e| ConfigError::plain(format!("{name}: model {model}: invalid pattern {p:?}: {e}")))?;
                t.patterns.push((re, price));
            }
        }
        Ok(t)
    }

    /// Adds (or replaces) every entry of `other`.
    pub fn extend(&mut self, other: PriceTable) {
        self.exact.extend(other.exact);
        let mut patterns = other.patterns;
        patterns.append(&mut self.patterns);
        self.patterns = patterns;
        if other.as_of.is_some() {
            self.as_of = other.as_of;
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Finds a model's price: exact name, then normalised names (provider prefix and
    /// dated or version suffixes removed), then patterns.
    pub fn lookup(&self, model: &str) -> Option<Arc<Price>> {
        let cands = candidates(model);
        cands.iter().find_map(|c| self.exact.get(c)).cloned().or_else(|| {
            cands.iter().find_map(|c| self.patterns.iter().find(|(re, _)| re.is_match(c)).map(|(_, p)| p.clone()))
        })
    }
}

/// Names to try for a model, most specific first.
pub fn candidates(model: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(4);
    let mut push = |s: String| {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    let lower = model.trim().to_lowercase();
    push(lower.clone());
    // `openai/gpt-4o`, `vertex_ai/gemini-2.0-flash`, `bedrock/anthropic.claude-…`
    let base = lower.rsplit('/').next().unwrap_or(&lower).to_string();
    push(base.clone());
    // Bedrock-style vendor prefixes: `anthropic.claude-…`, `meta.llama…`
    let base = match base.split_once('.') {
        Some((vendor, rest))
            if ["anthropic", "meta", "amazon", "cohere", "mistral", "ai21", "us", "eu"].contains(&vendor) =>
        {
            let rest =
                rest.split_once('.').filter(|_| vendor == "us" || vendor == "eu").map(|(_, r)| r).unwrap_or(rest);
            rest.to_string()
        }
        _ => base,
    };
    push(base.clone());
    push(strip_suffixes(&base));
    out
}

/// Removes dated and version suffixes: `-2024-08-06`, `-20250514`, `@20240620`,
/// `-v1:0`, `:0`, `-latest`.
fn strip_suffixes(name: &str) -> String {
    let mut s = name.to_string();
    loop {
        let before = s.len();
        if let Some(i) = s.rfind(':') {
            if s[i + 1..].chars().all(|c| c.is_ascii_digit()) {
                s.truncate(i);
            }
        }
        if let Some(i) = s.rfind("-v") {
            if s[i + 2..].chars().all(|c| c.is_ascii_digit()) && i + 2 < s.len() {
                s.truncate(i);
            }
        }
        for sep in ['-', '@'] {
            if let Some(i) = s.rfind(sep) {
                let tail = &s[i + 1..];
                let dated = (tail.len() == 8 && tail.chars().all(|c| c.is_ascii_digit())) || tail == "latest";
                if dated {
                    s.truncate(i);
                }
            }
        }
        // `-2024-08-06`
        if s.len() > 11 {
            let tail = &s[s.len() - 11..];
            let b = tail.as_bytes();
            if b[0] == b'-'
                && b[5] == b'-'
                && b[8] == b'-'
                && tail[1..].replace('-', "").chars().all(|c| c.is_ascii_digit())
            {
                s.truncate(s.len() - 11);
            }
        }
        if s.len() == before {
            return s;
        }
    }
}
