//! Otterline's own protobuf messages, generated from `proto/` at build time.

/// `otterline.v1`: persisted state (anomaly baselines, sending-queue records).
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/otterline.v1.rs"));
}
