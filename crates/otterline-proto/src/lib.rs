//! Otterline's own protobuf messages, generated from `proto/` at build time.

/// `otterline.v1`: persisted state (anomaly baselines, sending-queue records).
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/otterline.v1.rs"));
}

impl v1::QueueSignal {
    /// The code of the signal at `index` in Otterline's signal order (traces, metrics,
    /// logs: `otterline_core::Signal::index`), for every record that names a signal.
    pub fn from_index(index: usize) -> v1::QueueSignal {
        match index {
            0 => v1::QueueSignal::Traces,
            1 => v1::QueueSignal::Metrics,
            2 => v1::QueueSignal::Logs,
            _ => v1::QueueSignal::Unspecified,
        }
    }

    /// The signal's index in that order; `None` for `Unspecified`.
    pub fn index(self) -> Option<usize> {
        match self {
            v1::QueueSignal::Traces => Some(0),
            v1::QueueSignal::Metrics => Some(1),
            v1::QueueSignal::Logs => Some(2),
            v1::QueueSignal::Unspecified => None,
        }
    }
}
