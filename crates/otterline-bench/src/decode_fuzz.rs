//! Differential fuzzing of Otterline's protobuf decoder (`otterline_otlp::decode`) against
//! prost: seeded mutations of valid trace, metrics and log requests must give the same request from
//! both, or an error from both (with prost's message), and a request both decode must encode
//! (`otterline_core::pdata::encode`) to prost's bytes. `otterline-decode-fuzz` runs millions
//! of inputs; the test below runs a slice of them in CI.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::{logs_request, metrics_request, trace_request, Rng};

/// What a run saw.
#[derive(Debug, Default)]
pub struct Stats {
    pub inputs: u64,
    /// Both decoders returned the same request.
    pub both_ok: u64,
    /// Both returned the same error.
    pub both_err: u64,
    /// Inputs where the two disagreed: (input number, what differed). Empty when all is well.
    pub disagreements: Vec<(u64, String)>,
}

/// One mutation of `b`, chosen and placed by `rng`.
pub fn mutate(rng: &mut Rng, b: &[u8]) -> Vec<u8> {
    let mut m = b.to_vec();
    let rounds = 1 + rng.next_u64() % 3;
    for _ in 0..rounds {
        if m.is_empty() {
            m.push(rng.next_u64() as u8);
            continue;
        }
        let len = m.len() as u64;
        let at = (rng.next_u64() % len) as usize;
        match rng.next_u64() % 8 {
            // One bit.
            0 => m[at] ^= 1 << (rng.next_u64() % 8),
            // One byte.
            1 => m[at] = rng.next_u64() as u8,
            // Inserted bytes.
            2 => {
                let n = 1 + rng.next_u64() % 8;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                m.splice(at..at, bytes);
            }
            // A deleted range.
            3 => {
                let end = (at + 1 + (rng.next_u64() % 16) as usize).min(m.len());
                m.drain(at..end);
            }
            // Truncated.
            4 => m.truncate(at),
            // A range repeated (a field given twice, a length that no longer fits).
            5 => {
                let end = (at + 1 + (rng.next_u64() % 32) as usize).min(m.len());
                let copy = m[at..end].to_vec();
                m.splice(end..end, copy);
            }
            // A large or overlong varint (lengths and counts past the end).
            6 => {
                let v: &[u8] = match rng.next_u64() % 3 {
                    0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                    1 => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
                    _ => &[0x7f],
                };
                m.splice(at..(at + 1).min(m.len()), v.iter().copied());
            }
            // A tag with another wire type (groups included).
            _ => m[at] = (m[at] & !7) | (rng.next_u64() % 8) as u8,
        }
    }
    m
}

/// Compares the two decoders' results; a request both decode is also encoded by
/// Otterline's encoder (`pdata::encode`, via `batch`), which must write prost's bytes.
fn compare<M: PartialEq + std::fmt::Debug + Message + Clone>(
    ours: Result<M, prost::DecodeError>,
    theirs: Result<M, prost::DecodeError>,
    batch: fn(M) -> otterline_core::Batch,
    stats: &mut Stats,
) {
    match (ours, theirs) {
        // Equal, or equal bytes (a NaN is not equal to itself).
        (Ok(a), Ok(b)) if a == b || a.encode_to_vec() == b.encode_to_vec() => {
            if batch(a).encode_protobuf() != b.encode_to_vec() {
                stats.disagreements.push((stats.inputs, "the encoder wrote other bytes than prost".into()));
            }
            stats.both_ok += 1
        }
        (Err(a), Err(b)) if a.to_string() == b.to_string() => stats.both_err += 1,
        (a, b) => {
            let what = format!("ours {:?} / prost {:?}", a.map(|_| "Ok"), b.map(|_| "Ok"));
            stats.disagreements.push((stats.inputs, what));
        }
    }
}

/// Runs `inputs` mutated requests from `seed` (traces, metrics and logs in turn).
pub fn run(seed: u64, inputs: u64) -> Stats {
    use otterline_core::Signal;
    let mut rng = Rng::new(seed);
    let mut stats = Stats::default();
    let mut corpus: Vec<(Signal, Vec<u8>)> = Vec::new();
    for i in 0..96 {
        let n = 1 + (rng.next_u64() % 12) as usize;
        corpus.push(match i % 3 {
            0 => (Signal::Traces, trace_request(&mut rng, n).encode_to_vec()),
            1 => (Signal::Metrics, metrics_request(&mut rng, n.max(2)).encode_to_vec()),
            _ => (Signal::Logs, logs_request(&mut rng, n).encode_to_vec()),
        });
    }
    while stats.inputs < inputs {
        let (signal, base) = &corpus[(rng.next_u64() % corpus.len() as u64) as usize];
        let m = mutate(&mut rng, base);
        match signal {
            Signal::Traces => compare(
                otterline_otlp::decode::traces(&m),
                ExportTraceServiceRequest::decode(&m[..]),
                otterline_core::Batch::Traces,
                &mut stats,
            ),
            Signal::Metrics => compare(
                otterline_otlp::decode::metrics(&m),
                ExportMetricsServiceRequest::decode(&m[..]),
                otterline_core::Batch::Metrics,
                &mut stats,
            ),
            Signal::Logs => compare(
                otterline_otlp::decode::logs(&m),
                ExportLogsServiceRequest::decode(&m[..]),
                otterline_core::Batch::Logs,
                &mut stats,
            ),
        }
        stats.inputs += 1;
    }
    stats
}

#[cfg(test)]
mod tests {
    /// The CI slice: 20,000 inputs from a fixed seed; the bench binary runs millions.
    #[test]
    fn mutated_requests_decode_as_prost_decodes_them() {
        let s = super::run(0x0771_e71e, 20_000);
        assert!(s.disagreements.is_empty(), "{:?}", &s.disagreements[..s.disagreements.len().min(5)]);
        assert_eq!(s.both_ok + s.both_err, 20_000);
        assert!(s.both_ok > 1_000 && s.both_err > 1_000, "{s:?}: the mutations exercise both outcomes");
    }
}
