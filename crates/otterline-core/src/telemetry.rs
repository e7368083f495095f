//! Otterline's own metrics in the Prometheus text format (served on
//! `service.telemetry.metrics.address`, default `127.0.0.1:8888`, path `/metrics`), and
//! the process figures they include.
//!
//! Per component and signal (labels `<kind>="<id>"`, `signal`):
//! - receivers: `otterline_receiver_received_items_total`, `otterline_receiver_refused_items_total`;
//! - exporters: `otterline_exporter_exported_items_total`, `otterline_exporter_failed_items_total`
//!   (items of failed attempts that are retried), `otterline_exporter_dropped_items_total`;
//! - pipelines: `otterline_pipeline_dropped_items_total`.
//!
//! Per component: gauges such as `otterline_exporter_queue_size` and component-specific
//! counters (`otterline_processor_unpriced_spans_total`), and
//! `otterline_component_healthy{kind, component}` (1 ok, 0 degraded/failed).
//! Process: `otterline_process_resident_memory_bytes`, `otterline_process_cpu_seconds_total`,
//! `otterline_process_start_time_seconds`, `otterline_process_uptime_seconds`, `otterline_build_info`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

use crate::health::{HealthRegistry, SignalCounts, Status};

/// Resident set size of this process, from `/proc/self/statm`.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

static RELEASE_FREE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets how [`release_free_memory`] returns freed heap to the OS. The binary calls this
/// once with its global allocator's own routine; without it, glibc's `malloc_trim` is used.
pub fn set_release_free_memory(release: fn()) {
    let _ = RELEASE_FREE_MEMORY.set(release);
}

/// Returns freed heap pages to the OS so that they stop counting as resident memory.
pub fn release_free_memory() {
    if let Some(release) = RELEASE_FREE_MEMORY.get() {
        return release();
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages back to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Tells the kernel to reclaim the pages of this process's own executable that are
/// mapped now (`MADV_PAGEOUT`), and returns how many bytes of resident memory that freed.
///
/// Called once after start-up: the code and tables that parsing the config, building the
/// components and starting them touched (plus the kernel's fault-around neighbours) are not
/// needed again, and an idle sidecar then holds only what it actually runs. Pages that are
/// used later fault back in from the file (or the page cache). Clean file pages only: the
/// heap, stacks and written data are untouched. Off with `OTTERLINE_KEEP_STARTUP_PAGES=1`.
pub fn release_startup_pages() -> u64 {
    if std::env::var_os("OTTERLINE_KEEP_STARTUP_PAGES").is_some() {
        return 0;
    }
    #[cfg(target_os = "linux")]
    {
        let before = resident_bytes().unwrap_or(0);
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return 0 };
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return 0 };
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (Some(range), Some(perms)) = (f.next(), f.next()) else { continue };
            let path = f.nth(3).map(std::path::Path::new);
            if path != Some(exe.as_path()) || perms.contains('w') {
                continue;
            }
            let Some((a, b)) = range.split_once('-') else { continue };
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { continue };
            // SAFETY: advice on a read-only file mapping of our own executable; the kernel
            // re-reads a reclaimed page from the file on its next access, so no data is lost.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_PAGEOUT);
            }
        }
        before.saturating_sub(resident_bytes().unwrap_or(0))
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// User + system CPU time of this process, in seconds, from `/proc/self/stat`.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / hz.max(1) as f64)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// A metric family being written: `# HELP`/`# TYPE` once, then its samples.
struct Families {
    out: String,
    seen: BTreeMap<String, ()>,
}

impl Families {
    fn sample(&mut self, name: &str, kind: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        if self.seen.insert(name.to_string(), ()).is_none() {
            let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn metric_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Label pairs of one sample.
type Labels = Vec<(String, String)>;
/// A family's type, help and samples.
type Family = (&'static str, String, Vec<(Labels, f64)>);
/// A per-signal counter: its name suffix, how to read it, its help text.
type Field = (&'static str, fn(&SignalCounts) -> u64, &'static str);

/// Renders every component's counters and gauges, and the process figures.
pub fn render_prometheus(reg: &HealthRegistry) -> String {
    // Families must be contiguous in the text format: collect samples per name first.
    let mut samples: BTreeMap<String, Family> = BTreeMap::new();
    let mut add = |name: String, kind: &'static str, help: String, labels: Labels, v: f64| {
        samples.entry(name).or_insert_with(|| (kind, help, Vec::new())).2.push((labels, v));
    };
    let snap = reg.snapshot();
    for c in &snap.components {
        let label = c.kind.to_string();
        for (signal, counts) in &c.signals {
            let fields: &[Field] = match c.kind {
                "receiver" => &[
                    ("received", |s| s.accepted, "Items received and queued by a receiver."),
                    (
                        "refused",
                        |s| s.refused,
                        "Items refused with a retryable error (pipeline full, memory limit, draining).",
                    ),
                ],
                "exporter" => &[
                    ("exported", |s| s.sent, "Items an exporter delivered (written or accepted upstream)."),
                    ("failed", |s| s.retried, "Items of failed export attempts that are retried."),
                    (
                        "dropped",
                        |s| s.dropped,
                        "Items an exporter gave up on (permanent errors, retries exhausted, queue overflow).",
                    ),
                ],
                _ => &[("dropped", |s| s.dropped, "Items dropped.")],
            };
            for (field, get, help) in fields {
                add(
                    format!("otterline_{}_{field}_items_total", metric_name(&label)),
                    "counter",
                    help.to_string(),
                    vec![(label.clone(), c.id.clone()), ("signal".into(), signal.to_string())],
                    get(counts) as f64,
                );
            }
        }
        for (g, v) in &c.gauges {
            add(
                format!("otterline_{}_{}", metric_name(&label), metric_name(g)),
                "gauge",
                format!("Current {g} of a {label}."),
                vec![(label.clone(), c.id.clone())],
                *v as f64,
            );
        }
        for (k, v) in &c.extra {
            add(
                format!("otterline_{}_{}_total", metric_name(&label), metric_name(k)),
                "counter",
                format!("Count of {k} of a {label}."),
                vec![(label.clone(), c.id.clone())],
                *v as f64,
            );
        }
        add(
            "otterline_component_healthy".into(),
            "gauge",
            "1 when the component is running normally, 0 when degraded, failed or stopped.".into(),
            vec![("kind".into(), label.clone()), ("component".into(), c.id.clone())],
            if c.status == Status::Ok { 1.0 } else { 0.0 },
        );
    }
    let mut f = Families { out: String::with_capacity(4096), seen: BTreeMap::new() };
    for (name, (kind, help, rows)) in &samples {
        for (labels, v) in rows {
            let l: Vec<(&str, &str)> = labels.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            f.sample(name, kind, help, &l, *v);
        }
    }
    let ready = if snap.ready { 1.0 } else { 0.0 };
    f.sample("otterline_ready", "gauge", "1 while the service is ready (not starting or draining).", &[], ready);
    if let Some(rss) = resident_bytes() {
        f.sample(
            "otterline_process_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            &[],
            rss as f64,
        );
    }
    if let Some(cpu) = cpu_seconds() {
        f.sample(
            "otterline_process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the process.",
            &[],
            cpu,
        );
    }
    let started = reg.started().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    f.sample(
        "otterline_process_start_time_seconds",
        "gauge",
        "Start time of the process (Unix seconds).",
        &[],
        started,
    );
    let up = SystemTime::now().duration_since(reg.started()).unwrap_or_default().as_secs_f64();
    f.sample("otterline_process_uptime_seconds", "gauge", "Seconds since the process started.", &[], up);
    f.sample(
        "otterline_build_info",
        "gauge",
        "Always 1; the version is a label.",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    f.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::ComponentKind;
    use crate::Signal;

    #[test]
    fn renders_per_signal_counters_gauges_and_process_figures() {
        let reg = HealthRegistry::default();
        let r = reg.register(ComponentKind::Receiver, "otlp");
        r.counters.add_accepted(Signal::Traces, 10);
        r.counters.add_refused(Signal::Logs, 2);
        let e = reg.register(ComponentKind::Exporter, "otlp/up\"stream");
        e.counters.add_sent(Signal::Traces, 7);
        e.gauge("queue_size").store(3, std::sync::atomic::Ordering::Relaxed);
        let text = render_prometheus(&reg);
        assert!(
            text.contains("otterline_receiver_received_items_total{receiver=\"otlp\",signal=\"traces\"} 10\n"),
            "{text}"
        );
        assert!(text.contains("otterline_receiver_refused_items_total{receiver=\"otlp\",signal=\"logs\"} 2\n"));
        assert!(text
            .contains("otterline_exporter_exported_items_total{exporter=\"otlp/up\\\"stream\",signal=\"traces\"} 7\n"));
        assert!(text.contains("otterline_exporter_queue_size{exporter=\"otlp/up\\\"stream\"} 3\n"));
        assert!(text.contains("otterline_process_resident_memory_bytes "));
        // Each family's HELP/TYPE appears once, before its samples.
        assert_eq!(text.matches("# TYPE otterline_receiver_received_items_total counter").count(), 1);
    }
}
