//! Reading the alert history (`history_path`, NDJSON) for `otterline alerts`.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Entry {
    pub time: String,
    pub state: String,
    pub severity: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub service: String,
    pub series: String,
    #[serde(default)]
    pub episode_id: i64,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub time_to_resolve_s: Option<f64>,
}

/// Entries at or after `since`, oldest first. Unreadable lines are reported, not fatal.
pub fn read(path: &Path, since: Option<DateTime<Utc>>) -> Result<(Vec<Entry>, usize), String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut bad = 0;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => {
                let t = DateTime::parse_from_rfc3339(&e.time).map(|t| t.with_timezone(&Utc)).ok();
                if since.is_none_or(|s| t.is_some_and(|t| t >= s)) {
                    out.push(e);
                }
            }
            Err(_) => bad += 1,
        }
    }
    Ok((out, bad))
}

/// A fixed-width table.
pub fn table(entries: &[Entry]) -> String {
    let mut s = format!(
        "{:<24} {:<12} {:<8} {:<16} {:<18} {:>8}  {}\n",
        "time", "state", "severity", "type", "service", "resolve", "series"
    );
    for e in entries {
        let ttr = e.time_to_resolve_s.map(|t| format!("{:.0}s", t)).unwrap_or_else(|| "-".into());
        s.push_str(&format!(
            "{:<24} {:<12} {:<8} {:<16} {:<18} {:>8}  {}\n",
            e.time, e.state, e.severity, e.kind, e.service, ttr, e.series
        ));
    }
    let fired = entries.iter().filter(|e| e.state == "fired").count();
    let resolved: Vec<f64> = entries.iter().filter_map(|e| e.time_to_resolve_s).collect();
    let mean = if resolved.is_empty() {
        "-".to_string()
    } else {
        format!("{:.0}s", resolved.iter().sum::<f64>() / resolved.len() as f64)
    };
    s.push_str(&format!(
        "{} entries; {fired} fired, {} resolved, mean time to resolve {mean}\n",
        entries.len(),
        resolved.len()
    ));
    s
}
