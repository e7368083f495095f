//! Otterline's basic exporters.
//!
//! - [`debug`]: a summary line (or a full dump) per batch on stderr.
//! - [`nop`]: accepts and discards; optional simulated latency for load tests.
//! - [`json`]: OTLP/JSON lines files, one directory per signal, rotated and
//!   optionally compressed, written under a temp name and renamed when complete.

pub mod debug;
pub mod json;
pub mod nop;

pub use debug::DebugExporterFactory;
pub use json::JsonExporterFactory;
pub use nop::NopExporterFactory;
