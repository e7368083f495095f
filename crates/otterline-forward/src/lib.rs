//! Forwarding exporters: `otlp` (alias `otlp_grpc`) and `otlp_http`.
//!
//! Both are a [`forwarder::Forwarder`] around a protocol [`forwarder::Transport`]: requests
//! are encoded once, held in a bounded sending queue (memory, or disk with
//! `sending_queue.storage`), and sent by `num_consumers` tasks with the Collector's
//! `retry_on_failure` backoff. See `forwarder` for what is counted where.

pub mod codec;
pub mod forwarder;
mod grpc;
mod http;
pub mod queue;
pub mod settings;

pub use grpc::{GrpcConfig, OtlpGrpcExporterFactory};
pub use http::{HttpConfig, OtlpHttpExporterFactory};
