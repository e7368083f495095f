//! The `hostmetrics` receiver: utilisation of the host and of the Otterline process itself,
//! scraped every `collection_interval` and emitted as OTLP metrics with the OpenTelemetry
//! system semantic-convention names, like the Collector's receiver of the same name.
//!
//! ```yaml
//! receivers:
//!   hostmetrics:
//!     collection_interval: 10s
//!     scrapers: {cpu: {}, memory: {}, load: {}, disk: {}, filesystem: {}, network: {}, process: {}}
//! ```
//!
//! | scraper | metrics |
//! |---|---|
//! | `cpu` | `system.cpu.utilization` (per `cpu.logical_number`, 0–1), `system.cpu.logical.count` |
//! | `memory` | `system.memory.usage` (`system.memory.state` = used, free), `system.memory.limit`, `system.memory.utilization` |
//! | `load` | `system.cpu.load_average.1m`, `.5m`, `.15m` |
//! | `disk` | `system.disk.io` (`system.device`, `disk.io.direction` = read, write) |
//! | `filesystem` | `system.filesystem.usage` (`system.filesystem.state` = used, free), `system.filesystem.utilization` |
//! | `network` | `system.network.io`, `system.network.packets`, `system.network.errors` (`network.interface.name`, `network.io.direction` = receive, transmit) |
//! | `process` | `process.cpu.time`, `process.cpu.utilization`, `process.memory.usage`, `process.memory.virtual` for Otterline itself |
//!
//! Host metrics carry the resource `host.name`, `host.arch`, `os.type`; process metrics the
//! resource `service.name = otterline`, `process.pid`, `process.executable.name`. The scrape
//! runs on a blocking thread (sysinfo reads `/proc`); a batch the pipeline refuses is logged
//! and counted, and the next interval scrapes afresh.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;
use sysinfo::{Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use otterline_core::component::{BuildContext, ComponentError, Receiver, ReceiverContext, ReceiverFactory, Task};
use otterline_core::config::ConfigError;
use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::metrics::{AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::ExportMetricsServiceRequest;
use otterline_core::{Batch, SignalSet};
use otterline_model::otlp;

/// Scraper names, in the order their metrics are emitted.
pub const SCRAPERS: [&str; 7] = ["cpu", "memory", "load", "disk", "filesystem", "network", "process"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostMetricsConfig {
    #[serde(with = "otterline_core::units::duration")]
    pub collection_interval: Duration,
    /// Wait this long after start before the first scrape.
    #[serde(with = "otterline_core::units::duration")]
    pub initial_delay: Duration,
    /// Which scrapers run: a key present (with `{}` or no value) turns one on.
    pub scrapers: BTreeMap<String, Option<ScraperConfig>>,
}

impl Default for HostMetricsConfig {
    fn default() -> Self {
        HostMetricsConfig {
            collection_interval: Duration::from_secs(10),
            initial_delay: Duration::from_secs(1),
            scrapers: BTreeMap::new(),
        }
    }
}

/// No per-scraper settings yet; unknown keys are refused so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScraperConfig {}

/// The set of scrapers that run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled {
    pub cpu: bool,
    pub memory: bool,
    pub load: bool,
    pub disk: bool,
    pub filesystem: bool,
    pub network: bool,
    pub process: bool,
}

impl Enabled {
    pub const ALL: Enabled =
        Enabled { cpu: true, memory: true, load: true, disk: true, filesystem: true, network: true, process: true };
}

pub struct HostMetricsReceiverFactory;

impl ReceiverFactory for HostMetricsReceiverFactory {
    fn type_name(&self) -> &'static str {
        "hostmetrics"
    }
    fn description(&self) -> &'static str {
        "CPU, memory, load, disk, filesystem and network of the host and Otterline's own process, as OTLP metrics"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::of(otterline_core::Signal::Metrics)
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Receiver>, ConfigError> {
        let cfg: HostMetricsConfig = ctx.parse()?;
        if cfg.collection_interval < Duration::from_millis(100) {
            return Err(ctx.error("collection_interval", "must be at least 100ms"));
        }
        if cfg.scrapers.is_empty() {
            return Err(ctx.error(
                "scrapers",
                format!(
                    "list at least one scraper: {}, e.g. `scrapers: {{cpu: {{}}, memory: {{}}}}`",
                    SCRAPERS.join(", ")
                ),
            ));
        }
        let mut on = Enabled::default();
        for name in cfg.scrapers.keys() {
            match name.as_str() {
                "cpu" => on.cpu = true,
                "memory" => on.memory = true,
                "load" => on.load = true,
                "disk" => on.disk = true,
                "filesystem" => on.filesystem = true,
                "network" => on.network = true,
                "process" => on.process = true,
                other => {
                    return Err(ctx.error(
                        &format!("scrapers.{other}"),
                        format!("unknown scraper {other:?}; the scrapers are {}", SCRAPERS.join(", ")),
                    ))
                }
            }
        }
        Ok(Box::new(HostMetricsReceiver { interval: cfg.collection_interval, delay: cfg.initial_delay, on }))
    }
}

struct HostMetricsReceiver {
    interval: Duration,
    delay: Duration,
    on: Enabled,
}

#[async_trait]
impl Receiver for HostMetricsReceiver {
    async fn start(self: Box<Self>, ctx: ReceiverContext) -> Result<Task, ComponentError> {
        let on = self.on;
        let mut scraper = tokio::task::spawn_blocking(move || Scraper::new(on))
            .await
            .map_err(|e| ComponentError::new(format!("hostmetrics: initial scan failed: {e}")))?;
        let (interval, delay) = (self.interval, self.delay);
        Ok(Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = ctx.shutdown.cancelled() => return Ok(()),
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                }
                let scraped = tokio::task::spawn_blocking(move || {
                    let request = scraper.scrape();
                    (scraper, request)
                })
                .await;
                let request;
                (scraper, request) =
                    scraped.map_err(|e| ComponentError::new(format!("hostmetrics scrape panicked: {e}")))?;
                if let Err(refusal) = ctx.output.send(Batch::Metrics(request)).await {
                    tracing::warn!(receiver = %ctx.id, "host metrics not accepted: {refusal}; the next scrape sends fresh values");
                }
            }
        }))
    }
}

/// The state kept between scrapes (sysinfo computes utilisation from two readings).
pub struct Scraper {
    on: Enabled,
    system: System,
    disks: Disks,
    networks: Networks,
    pid: Option<Pid>,
    boot_ns: u64,
    process_start_ns: u64,
    host: Vec<KeyValue>,
}

impl Scraper {
    /// Takes the first readings, so the first scrape already has CPU utilisation.
    pub fn new(on: Enabled) -> Scraper {
        let mut system = System::new();
        let pid = sysinfo::get_current_pid().ok();
        if on.cpu {
            system.refresh_cpu_usage();
        }
        if let (true, Some(pid)) = (on.process, pid) {
            system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, process_refresh());
        }
        let disks = if on.disk || on.filesystem { Disks::new_with_refreshed_list() } else { Disks::new() };
        let networks = if on.network { Networks::new_with_refreshed_list() } else { Networks::new() };
        let process_start_ns =
            pid.and_then(|p| system.process(p)).map_or(0, |p| p.start_time().saturating_mul(1_000_000_000));
        let host = vec![
            kv_str("host.name", System::host_name().unwrap_or_default()),
            kv_str("host.arch", std::env::consts::ARCH.to_string()),
            kv_str("os.type", std::env::consts::OS.to_string()),
        ];
        Scraper {
            on,
            system,
            disks,
            networks,
            pid,
            boot_ns: System::boot_time().saturating_mul(1_000_000_000),
            process_start_ns,
            host,
        }
    }

    /// One reading of everything enabled, as one metrics request.
    pub fn scrape(&mut self) -> ExportMetricsServiceRequest {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let mut host = Vec::new();
        let on = self.on;
        if on.cpu {
            self.system.refresh_cpu_usage();
            let points = self
                .system
                .cpus()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    point(
                        now,
                        0,
                        (c.cpu_usage() as f64 / 100.0).clamp(0.0, 1.0),
                        vec![kv_int("cpu.logical_number", i as i64)],
                    )
                })
                .collect();
            host.push(gauge("system.cpu.utilization", "1", "CPU time in use, per logical CPU, 0 to 1.", points));
            let n = self.system.cpus().len() as i64;
            host.push(gauge("system.cpu.logical.count", "{cpu}", "Logical CPUs.", vec![int_point(now, 0, n, vec![])]));
        }
        if on.memory {
            self.system.refresh_memory();
            let (total, used, free) =
                (self.system.total_memory(), self.system.used_memory(), self.system.free_memory());
            host.push(sum(
                "system.memory.usage",
                "By",
                "Memory in use and free.",
                false,
                vec![
                    int_point(now, 0, used as i64, vec![kv_str("system.memory.state", "used".into())]),
                    int_point(now, 0, free as i64, vec![kv_str("system.memory.state", "free".into())]),
                ],
            ));
            host.push(sum(
                "system.memory.limit",
                "By",
                "Total memory.",
                false,
                vec![int_point(now, 0, total as i64, vec![])],
            ));
            let util = if total > 0 { used as f64 / total as f64 } else { 0.0 };
            host.push(gauge(
                "system.memory.utilization",
                "1",
                "Share of memory in use, 0 to 1.",
                vec![point(now, 0, util, vec![kv_str("system.memory.state", "used".into())])],
            ));
        }
        if on.load {
            let l = System::load_average();
            for (name, v) in [
                ("system.cpu.load_average.1m", l.one),
                ("system.cpu.load_average.5m", l.five),
                ("system.cpu.load_average.15m", l.fifteen),
            ] {
                host.push(gauge(name, "{thread}", "Run-queue load average.", vec![point(now, 0, v, vec![])]));
            }
        }
        if on.disk || on.filesystem {
            self.disks.refresh(true);
        }
        if on.disk {
            let mut seen = std::collections::HashSet::new();
            let mut points = Vec::new();
            for d in self.disks.list() {
                let device = d.name().to_string_lossy().into_owned();
                if !seen.insert(device.clone()) {
                    continue;
                }
                let u = d.usage();
                for (dir, v) in [("read", u.total_read_bytes), ("write", u.total_written_bytes)] {
                    points.push(int_point(
                        now,
                        self.boot_ns,
                        v as i64,
                        vec![kv_str("system.device", device.clone()), kv_str("disk.io.direction", dir.into())],
                    ));
                }
            }
            host.push(sum("system.disk.io", "By", "Bytes read from and written to each disk.", true, points));
        }
        if on.filesystem {
            let (mut usage, mut util) = (Vec::new(), Vec::new());
            for d in self.disks.list().iter().filter(|d| d.total_space() > 0) {
                let attrs = |state: Option<&str>| {
                    let mut a = vec![
                        kv_str("system.device", d.name().to_string_lossy().into_owned()),
                        kv_str("system.filesystem.mountpoint", d.mount_point().display().to_string()),
                        kv_str("system.filesystem.type", d.file_system().to_string_lossy().into_owned()),
                    ];
                    if let Some(s) = state {
                        a.push(kv_str("system.filesystem.state", s.into()));
                    }
                    a
                };
                let (total, free) = (d.total_space(), d.available_space());
                let used = total.saturating_sub(free);
                usage.push(int_point(now, 0, used as i64, attrs(Some("used"))));
                usage.push(int_point(now, 0, free as i64, attrs(Some("free"))));
                util.push(point(now, 0, used as f64 / total as f64, attrs(None)));
            }
            host.push(sum("system.filesystem.usage", "By", "Filesystem space used and free.", false, usage));
            host.push(gauge("system.filesystem.utilization", "1", "Share of filesystem space used, 0 to 1.", util));
        }
        if on.network {
            self.networks.refresh(true);
            let (mut io, mut packets, mut errors) = (Vec::new(), Vec::new(), Vec::new());
            let mut names: Vec<&String> = self.networks.list().keys().collect();
            names.sort();
            for name in names {
                let Some(n) = self.networks.list().get(name) else { continue };
                let attrs = |dir: &str| {
                    vec![kv_str("network.interface.name", name.clone()), kv_str("network.io.direction", dir.into())]
                };
                io.push(int_point(now, self.boot_ns, n.total_received() as i64, attrs("receive")));
                io.push(int_point(now, self.boot_ns, n.total_transmitted() as i64, attrs("transmit")));
                packets.push(int_point(now, self.boot_ns, n.total_packets_received() as i64, attrs("receive")));
                packets.push(int_point(now, self.boot_ns, n.total_packets_transmitted() as i64, attrs("transmit")));
                errors.push(int_point(now, self.boot_ns, n.total_errors_on_received() as i64, attrs("receive")));
                errors.push(int_point(now, self.boot_ns, n.total_errors_on_transmitted() as i64, attrs("transmit")));
            }
            host.push(sum("system.network.io", "By", "Bytes received and sent per interface.", true, io));
            host.push(sum("system.network.packets", "{packet}", "Packets received and sent.", true, packets));
            host.push(sum("system.network.errors", "{error}", "Receive and send errors.", true, errors));
        }
        let mut resource_metrics = Vec::new();
        if !host.is_empty() {
            resource_metrics.push(resource_metrics_of(self.host.clone(), host));
        }
        if let (true, Some(pid)) = (on.process, self.pid) {
            self.system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, process_refresh());
            if let Some(p) = self.system.process(pid) {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                let start = self.process_start_ns;
                let metrics = vec![
                    sum(
                        "process.cpu.time",
                        "s",
                        "CPU time used by Otterline.",
                        true,
                        vec![point(now, start, p.accumulated_cpu_time() as f64 / 1000.0, vec![])],
                    ),
                    gauge(
                        "process.cpu.utilization",
                        "1",
                        "Otterline's share of all CPUs since the last scrape, 0 to 1.",
                        vec![point(now, 0, (p.cpu_usage() as f64 / 100.0 / cpus).clamp(0.0, 1.0), vec![])],
                    ),
                    sum(
                        "process.memory.usage",
                        "By",
                        "Otterline's resident memory.",
                        false,
                        vec![int_point(now, 0, p.memory() as i64, vec![])],
                    ),
                    sum(
                        "process.memory.virtual",
                        "By",
                        "Otterline's virtual memory.",
                        false,
                        vec![int_point(now, 0, p.virtual_memory() as i64, vec![])],
                    ),
                ];
                let resource = vec![
                    kv_str("service.name", "otterline".into()),
                    kv_str("service.version", env!("CARGO_PKG_VERSION").into()),
                    kv_int("process.pid", pid.as_u32() as i64),
                    kv_str("process.executable.name", p.name().to_string_lossy().into_owned()),
                    self.host[0].clone(),
                ];
                resource_metrics.push(resource_metrics_of(resource, metrics));
            }
        }
        ExportMetricsServiceRequest { resource_metrics }
    }
}

fn process_refresh() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing().with_cpu().with_memory()
}

fn resource_metrics_of(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource { attributes, ..Default::default() }),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(otterline_core::pdata::common::InstrumentationScope {
                name: "otterline/hostmetrics".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn kv_str(key: &str, v: String) -> KeyValue {
    otterline_model::attrs::kv_str(key, v)
}

fn kv_int(key: &str, v: i64) -> KeyValue {
    otterline_model::attrs::kv_i64(key, v)
}

fn point(now: u64, start: u64, v: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    otlp::double_point(start, now, v, attributes)
}

fn int_point(now: u64, start: u64, v: i64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    otlp::int_point(start, now, v, attributes)
}

fn gauge(name: &str, unit: &str, description: &str, data_points: Vec<NumberDataPoint>) -> Metric {
    otlp::gauge(name, unit, description, data_points)
}

fn sum(name: &str, unit: &str, description: &str, monotonic: bool, data_points: Vec<NumberDataPoint>) -> Metric {
    otlp::sum(name, unit, description, AggregationTemporality::Cumulative, monotonic, data_points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::pdata::common::{any_value, AnyValue};
    use otterline_core::pdata::metrics::{metric, number_data_point};

    fn build(yaml: &str) -> Result<Box<dyn Receiver>, ConfigError> {
        let node = otterline_core::config::yaml::parse("test.yaml", yaml).expect("yaml");
        let id = otterline_core::ComponentId::parse("hostmetrics").expect("id");
        let ctx = BuildContext { id: &id, config: &node, path: "receivers.hostmetrics".into(), mark: &node.mark };
        HostMetricsReceiverFactory.build(&ctx)
    }

    fn find<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Vec<&'a Metric> {
        req.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
            .collect()
    }

    fn values(m: &Metric) -> Vec<f64> {
        let points = match &m.data {
            Some(metric::Data::Gauge(g)) => &g.data_points,
            Some(metric::Data::Sum(s)) => &s.data_points,
            _ => panic!("{} is neither a gauge nor a sum", m.name),
        };
        points
            .iter()
            .map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                Some(number_data_point::Value::AsInt(v)) => v as f64,
                None => f64::NAN,
            })
            .collect()
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = build("collection_interval: 10s").err().expect("no scrapers must fail");
        assert!(e.to_string().contains("scrapers"), "{e}");
        let e = build("scrapers: {cpu: {}, gpu: {}}").err().expect("unknown scraper must fail");
        assert!(e.to_string().contains("gpu") && e.to_string().contains("cpu, memory"), "{e}");
        let e = build("collection_interval: 1ms\nscrapers: {cpu: {}}").err().expect("tiny interval must fail");
        assert!(e.to_string().contains("collection_interval"), "{e}");
        let e = build("scrapers: {cpu: {percpu: true}}").err().expect("unknown scraper key must fail");
        assert!(e.to_string().contains("percpu"), "{e}");
        assert!(build("scrapers:\n  cpu:\n  memory: {}").is_ok(), "a bare key turns a scraper on");
    }

    #[test]
    fn a_scrape_reports_every_metric_with_sane_values() {
        let mut s = Scraper::new(Enabled::ALL);
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let req = s.scrape();
        for name in [
            "system.cpu.utilization",
            "system.cpu.logical.count",
            "system.memory.usage",
            "system.memory.limit",
            "system.memory.utilization",
            "system.cpu.load_average.1m",
            "system.disk.io",
            "system.filesystem.usage",
            "system.filesystem.utilization",
            "system.network.io",
            "system.network.packets",
            "system.network.errors",
            "process.cpu.time",
            "process.cpu.utilization",
            "process.memory.usage",
            "process.memory.virtual",
        ] {
            assert_eq!(find(&req, name).len(), 1, "{name} missing or repeated");
        }
        let cpus = values(find(&req, "system.cpu.utilization")[0]);
        assert!(!cpus.is_empty());
        assert!(cpus.iter().all(|v| (0.0..=1.0).contains(v)), "{cpus:?}");
        let limit = values(find(&req, "system.memory.limit")[0])[0];
        let usage = values(find(&req, "system.memory.usage")[0]);
        assert!(limit > 0.0 && usage[0] > 0.0 && usage[0] <= limit, "used {usage:?} of {limit}");
        let util = values(find(&req, "system.memory.utilization")[0])[0];
        assert!((util - usage[0] / limit).abs() < 1e-9);
        // Our own RSS, as /proc says, within a margin for what this test allocates meanwhile.
        let rss = values(find(&req, "process.memory.usage")[0])[0];
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        assert!((rss / 1024.0 - kib).abs() / kib < 0.5, "process.memory.usage {rss} B vs VmRSS {kib} KiB");
        // Loopback exists on every Linux host, with both directions.
        let io = find(&req, "system.network.io")[0];
        let Some(metric::Data::Sum(sum)) = &io.data else { panic!("system.network.io is a sum") };
        assert!(sum.is_monotonic);
        assert!(sum.data_points.iter().any(|p| p
            .attributes
            .iter()
            .any(|a| a.value == Some(AnyValue { value: Some(any_value::Value::StringValue("lo".into())) }))));
        let resource = req.resource_metrics[1].resource.as_ref().expect("process resource");
        assert!(resource.attributes.iter().any(|a| a.key == "process.pid"
            && a.value == Some(AnyValue { value: Some(any_value::Value::IntValue(std::process::id() as i64)) })));
    }

    #[test]
    fn only_enabled_scrapers_report() {
        let mut s = Scraper::new(Enabled { memory: true, ..Enabled::default() });
        let req = s.scrape();
        let names: Vec<&str> = req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["system.memory.usage", "system.memory.limit", "system.memory.utilization"]);
    }
}
