//! Request validation shared by the gRPC and HTTP paths.
//!
//! Items whose ids cannot be right are removed and counted so that the response
//! can report them as `partial_success`: a span needs a 16-byte trace id and an
//! 8-byte span id; a log record's ids, when present, must have those lengths.

use otterline_core::Batch;

/// Removes malformed items in place; returns how many were rejected and why.
pub fn validate(batch: &mut Batch) -> (i64, String) {
    match batch {
        Batch::Traces(r) => {
            let mut rejected = 0i64;
            for rs in &mut r.resource_spans {
                for ss in &mut rs.scope_spans {
                    let before = ss.spans.len();
                    ss.spans.retain(|s| {
                        s.trace_id.len() == 16
                            && s.span_id.len() == 8
                            && (s.parent_span_id.is_empty() || s.parent_span_id.len() == 8)
                    });
                    rejected += (before - ss.spans.len()) as i64;
                }
            }
            let msg = if rejected > 0 {
                format!("{rejected} span(s) rejected: trace_id must be 16 bytes, span_id 8 bytes, parent_span_id empty or 8 bytes")
            } else {
                String::new()
            };
            (rejected, msg)
        }
        Batch::Logs(r) => {
            let mut rejected = 0i64;
            for rl in &mut r.resource_logs {
                for sl in &mut rl.scope_logs {
                    let before = sl.log_records.len();
                    sl.log_records.retain(|l| matches!(l.trace_id.len(), 0 | 16) && matches!(l.span_id.len(), 0 | 8));
                    rejected += (before - sl.log_records.len()) as i64;
                }
            }
            let msg = if rejected > 0 {
                format!(
                    "{rejected} log record(s) rejected: trace_id must be empty or 16 bytes, span_id empty or 8 bytes"
                )
            } else {
                String::new()
            };
            (rejected, msg)
        }
        Batch::Metrics(_) => (0, String::new()),
    }
}
