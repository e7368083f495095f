//! The `memory_limiter` processor: keeps the process's memory bounded under overload by
//! making the receivers of its pipeline refuse new data (retryable: gRPC `Unavailable`,
//! HTTP 503) while resident memory is above the soft limit.
//!
//! A checker thread reads the resident set size (`/proc/self/statm`) every
//! `check_interval`. Hard limit = `limit_mib` (or `limit_percentage` of the cgroup's memory
//! limit, or of physical memory without one); soft limit = hard − `spike_limit_mib` (or
//! `spike_limit_percentage`; default 20 % of the hard limit). Above the soft limit the
//! pipeline's admission gate closes and freed heap is returned to the OS (the allocator's trim),
//! so that RSS can fall back; below it, the gate opens again. Data already accepted keeps
//! flowing: this processor never drops anything, it passes every batch through.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use otterline_core::component::{BuildContext, Gate, Processor, ProcessorFactory};
use otterline_core::config::ConfigError;
use otterline_core::health::{ComponentHealth, Status};
use otterline_core::telemetry::resident_bytes;
use otterline_core::Batch;

const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    #[serde(with = "otterline_core::units::duration")]
    pub check_interval: Duration,
    pub limit_mib: u64,
    pub spike_limit_mib: u64,
    pub limit_percentage: u64,
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: Duration::from_secs(1),
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

/// Hard and soft limits in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub hard: u64,
    pub soft: u64,
}

impl MemoryLimiterConfig {
    /// The limits, given the memory available to the process (cgroup or physical).
    pub fn limits(&self, available: Option<u64>) -> Result<Limits, (&'static str, String)> {
        let hard = if self.limit_mib > 0 {
            self.limit_mib * MIB
        } else if self.limit_percentage > 0 {
            if self.limit_percentage > 100 {
                return Err(("limit_percentage", "must be between 1 and 100".into()));
            }
            let Some(total) = available else {
                return Err((
                    "limit_percentage",
                    "cannot read the memory available to this process; set limit_mib".into(),
                ));
            };
            total / 100 * self.limit_percentage
        } else {
            return Err(("limit_mib", "set limit_mib (or limit_percentage of the container's memory limit)".into()));
        };
        let spike = if self.spike_limit_mib > 0 {
            self.spike_limit_mib * MIB
        } else if self.spike_limit_percentage > 0 {
            match (self.limit_mib > 0, available) {
                (false, Some(total)) => total / 100 * self.spike_limit_percentage,
                _ => hard / 100 * self.spike_limit_percentage,
            }
        } else {
            hard / 5
        };
        if spike >= hard {
            return Err(("spike_limit_mib", "must be less than the limit".into()));
        }
        Ok(Limits { hard, soft: hard - spike })
    }
}

pub struct MemoryLimiterProcessorFactory;

impl ProcessorFactory for MemoryLimiterProcessorFactory {
    fn type_name(&self) -> &'static str {
        "memory_limiter"
    }
    fn description(&self) -> &'static str {
        "refuses new data (retryable) while resident memory is above limit - spike; keeps memory bounded under overload"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
        let cfg: MemoryLimiterConfig = ctx.parse()?;
        if cfg.check_interval.is_zero() {
            return Err(ctx.error("check_interval", "must be more than 0, e.g. 1s"));
        }
        let limits = cfg.limits(available_memory()).map_err(|(key, msg)| ctx.error(key, msg))?;
        Ok(Box::new(MemoryLimiter {
            interval: cfg.check_interval,
            limits,
            gate: Arc::new(Gate::new(format!("{} above its soft limit", ctx.id))),
            stop: Arc::new(AtomicBool::new(false)),
            started: false,
        }))
    }
}

pub struct MemoryLimiter {
    interval: Duration,
    limits: Limits,
    gate: Arc<Gate>,
    stop: Arc<AtomicBool>,
    started: bool,
}

impl Processor for MemoryLimiter {
    fn attach(&mut self, health: Arc<ComponentHealth>) {
        if self.started {
            return;
        }
        self.started = true;
        let rss_gauge = health.gauge("rss_bytes");
        health.gauge("soft_limit_bytes").store(self.limits.soft as i64, Ordering::Relaxed);
        health.gauge("hard_limit_bytes").store(self.limits.hard as i64, Ordering::Relaxed);
        let refusing = health.gauge("refusing");
        let checker = Checker { limits: self.limits, gate: self.gate.clone(), health, rss_gauge, refusing };
        let (stop, interval) = (self.stop.clone(), self.interval);
        let spawned = std::thread::Builder::new().name("memory-limiter".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                checker.check();
                std::thread::sleep(interval);
            }
            checker.gate.set_closed(false);
        });
        if let Err(e) = spawned {
            warn!(error = %e, "memory_limiter could not start its checker thread; memory is not limited");
        }
    }

    fn admission_gate(&self) -> Option<Arc<Gate>> {
        Some(self.gate.clone())
    }

    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        out.push(batch);
    }

    fn shutdown(&mut self, _out: &mut Vec<Batch>) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Checker {
    limits: Limits,
    gate: Arc<Gate>,
    health: Arc<ComponentHealth>,
    rss_gauge: Arc<AtomicI64>,
    refusing: Arc<AtomicI64>,
}

impl Checker {
    fn check(&self) {
        let Some(mut rss) = resident_bytes() else { return };
        if rss > self.limits.soft {
            // Freed heap may still count as resident: give it back before deciding.
            otterline_core::telemetry::release_free_memory();
            rss = resident_bytes().unwrap_or(rss);
        }
        self.rss_gauge.store(rss as i64, Ordering::Relaxed);
        let over = rss > self.limits.soft;
        if over != self.gate.is_closed() {
            self.gate.set_closed(over);
            self.refusing.store(over as i64, Ordering::Relaxed);
            let (rss_mib, soft_mib) = (rss / MIB, self.limits.soft / MIB);
            if over {
                self.health
                    .set(Status::Degraded, format!("refusing data: RSS {rss_mib} MiB > soft limit {soft_mib} MiB"));
                warn!(rss_mib, soft_limit_mib = soft_mib, "memory above the soft limit; refusing new data (retryable)");
            } else {
                self.health.set(Status::Ok, "");
                info!(rss_mib, soft_limit_mib = soft_mib, "memory back below the soft limit; accepting data again");
            }
        }
    }
}

/// The memory this process may use: the cgroup limit (v2, then v1), else physical memory.
pub fn available_memory() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let cgroup = read("/sys/fs/cgroup/memory.max").or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    });
    match (cgroup, physical) {
        // v1 reports "no limit" as a huge number.
        (Some(c), Some(p)) => Some(c.min(p)),
        (c, p) => c.or(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(limit: u64, spike: u64) -> MemoryLimiterConfig {
        MemoryLimiterConfig { limit_mib: limit, spike_limit_mib: spike, ..Default::default() }
    }

    #[test]
    fn limits_follow_the_collector_rules() {
        assert_eq!(cfg(100, 30).limits(None).unwrap(), Limits { hard: 100 * MIB, soft: 70 * MIB });
        // Default spike: 20 % of the limit.
        assert_eq!(cfg(100, 0).limits(None).unwrap(), Limits { hard: 100 * MIB, soft: 80 * MIB });
        let pct = MemoryLimiterConfig { limit_percentage: 50, spike_limit_percentage: 10, ..Default::default() };
        assert_eq!(pct.limits(Some(1000 * MIB)).unwrap(), Limits { hard: 500 * MIB, soft: 400 * MIB });
        assert_eq!(cfg(0, 0).limits(None).unwrap_err().0, "limit_mib");
        assert_eq!(cfg(100, 100).limits(None).unwrap_err().0, "spike_limit_mib");
    }

    #[test]
    fn the_gate_closes_above_the_soft_limit_and_reopens_below() {
        let rss = resident_bytes().unwrap();
        let health = Arc::new(ComponentHealth::new("processor", "memory_limiter".into()));
        let checker = |soft: u64| Checker {
            limits: Limits { hard: soft + MIB, soft },
            gate: Arc::new(Gate::new("test")),
            health: health.clone(),
            rss_gauge: Arc::new(AtomicI64::new(0)),
            refusing: Arc::new(AtomicI64::new(0)),
        };
        let low = checker(rss / 4);
        low.check();
        assert!(low.gate.is_closed());
        let high = checker(rss * 4);
        high.gate.set_closed(true);
        high.check();
        assert!(!high.gate.is_closed());
        assert!(resident_bytes().unwrap() > 0 && available_memory().unwrap() > 0);
    }
}
