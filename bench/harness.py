#!/usr/bin/env python3
"""Otterline beside Rotel, same machine, same load, one run (start it with `bench/run`).

The collector under test is pinned to CPU 0 (`taskset`); the load generator and the
sinks run on CPU 1. Runs of the collectors alternate within each repetition, and the
table shows medians over repetitions and Otterline / Rotel ratios.

Scenarios
  a  pass-through: OTLP -> nop (Rotel: blackhole), traces over gRPC and over HTTP, metrics
     and logs over gRPC. The bare tonic server (`otterline-sink`: decode and answer OK) is
     measured alongside as a floor.
  b  OTLP -> batch -> otlp forward (gRPC, gzip) to a sink on CPU 1 (Rotel: its batching and
     otlp exporter, gzip, the same sink).
  c  the full embedded default pipeline (cost + aggregate + anomaly -> Parquet + JSON +
     alert + debug); Rotel has no equivalent, so it is compared to Rotel's (a) figure.
  d  `otterline replay` of a Parquet archive -> nop (Otterline only).
  e  idle for --idle seconds after start: RSS and CPU. Otterline is also shown with
     OTTERLINE_KEEP_STARTUP_PAGES=1 (start-up pages kept resident) and on the default
     pipeline.

Figures: accepted items/s; collector CPU-seconds (user+system) per million items, counted
from the start of the load to the collector's exit after SIGTERM, so work it buffered during
the load and did at shutdown (closing an open Parquet file) counts (the load window alone is
printed per run on stderr);
request latency p50/p99; peak RSS (VmHWM) of the collector; idle RSS (VmRSS).
"""
import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")
OTTERLINE = os.path.join(REL, "otterline")
LOADGEN = os.path.join(REL, "otterline-loadgen")
SINK = os.path.join(REL, "otterline-sink")
ARCHIVE_GEN = os.path.join(REL, "otterline-archive-gen")


def rotel_binary():
    import rotel  # installed by bench/run from bench/requirements.txt

    path = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    if not os.access(path, os.X_OK):
        sys.exit(f"harness: the rotel package has no executable at {path}")
    return path


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out = set()


def free_port():
    """A free loopback port below the kernel's ephemeral range. A port the kernel hands out
    for bind(0) can be taken again by any outgoing connection (the load generator opens
    many) between now and the collector's start; ports below the range are never picked
    for those."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, max(10001, low))
        if port in _handed_out:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _handed_out.add(port)
        return port
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what):
    for _ in range(400):
        if proc.poll() is not None:
            sys.exit(f"harness: {what} exited with {proc.returncode} before listening; see {proc.log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    sys.exit(f"harness: {what} never listened on {port}")


def proc_status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


class Collector:
    """A collector process on CPU 0 with an OTLP gRPC and HTTP port."""

    def __init__(self, work, name, cmd, env=None, cpu="0"):
        self.name = name
        self.log = os.path.join(work, f"{name}.log")
        self.grpc, self.http = cmd.grpc, cmd.http
        full = ["taskset", "-c", cpu] + cmd.argv
        e = dict(os.environ, **(env or {}))
        e.pop("RUST_LOG", None)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(full, env=e, cwd=work, stdout=subprocess.DEVNULL, stderr=log)
        self.proc.log = self.log
        wait_port(self.grpc, self.proc, name)
        wait_port(self.http, self.proc, name)
        self.pid = self.proc.pid

    def stop(self):
        """SIGTERM, then waits for the exit (the collector drains what it buffered).
        Returns the CPU-seconds (user+system) the process used over its whole life."""
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while True:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return ru.ru_utime + ru.ru_stime
            if time.monotonic() > deadline:
                self.proc.kill()
                _, status, ru = os.wait4(self.pid, 0)
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                print(f"harness: {self.name} did not stop within 60 s of SIGTERM; killed", file=sys.stderr)
                return None
            time.sleep(0.01)


class Cmd:
    def __init__(self, argv, grpc, http):
        self.argv, self.grpc, self.http = argv, grpc, http


def otterline_config(work, name, exporters, pipeline_exporters, processors="", pipeline_processors="[]"):
    grpc, http, metrics = free_port(), free_port(), free_port()
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(f"""receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}", max_recv_msg_size_mib: 64}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
{processors or "  {}"}
exporters:
{exporters}
service:
  telemetry:
    logs: {{level: warn}}
    metrics: {{address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {{receivers: [otlp], processors: {pipeline_processors}, exporters: {pipeline_exporters}}}
    metrics: {{receivers: [otlp], processors: {pipeline_processors}, exporters: {pipeline_exporters}}}
    logs: {{receivers: [otlp], processors: {pipeline_processors}, exporters: {pipeline_exporters}}}
""".replace("processors:\n  {}\n", ""))
    return Cmd([OTTERLINE, "--config", path], grpc, http), path


def with_binary(path):
    """Points the otterline_* helpers at another otterline build (--also-otterline)."""
    global OTTERLINE
    OTTERLINE = path


def otterline_nop(work, name="otterline"):
    return otterline_config(work, name, "  nop: {}", "[nop]")[0]


def otterline_forward(work, sink_port):
    return otterline_config(
        work,
        "otterline-forward",
        f'  otlp:\n    endpoint: "127.0.0.1:{sink_port}"\n    tls: {{insecure: true}}\n    compression: gzip',
        "[otlp]",
        processors="  batch: {}",
        pipeline_processors="[batch]",
    )[0]


def otterline_default(work, name):
    """The embedded default pipeline, on free ports, writing under work/<name>-data."""
    grpc, http = free_port(), free_port()
    env = {
        "OTTERLINE_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
        "OTTERLINE_HTTP_ENDPOINT": f"127.0.0.1:{http}",
        "OTTERLINE_HEALTH_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTTERLINE_DASHBOARD_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTTERLINE_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
        "OTTERLINE_DATA_DIR": os.path.join(work, f"{name}-data"),
    }
    return Cmd([OTTERLINE], grpc, http), env


def rotel(work, name, exporter_args):
    grpc, http = free_port(), free_port()
    argv = [
        rotel_binary(), "start",
        "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
        "--otlp-http-endpoint", f"127.0.0.1:{http}",
        "--otlp-grpc-max-recv-msg-size-mib", "64",
        "--pid-file", os.path.join(work, f"{name}.pid"),
        "--log-file", os.path.join(work, f"{name}.rotel.log"),
    ] + exporter_args
    return Cmd(argv, grpc, http)


def loadgen(args, collector, transport, signal_name, label, streams=1):
    target = ["--grpc", f"127.0.0.1:{collector.grpc}"] if transport == "grpc" else ["--http", f"http://127.0.0.1:{collector.http}"]
    out = subprocess.run(
        ["taskset", "-c", "1", LOADGEN, *target, "--signal", signal_name, "--connections", str(args.connections),
         "--streams", str(streams),
         "--duration", str(args.seconds), "--pid", str(collector.pid), "--label", label],
        capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"harness: load generator failed against {label}: {out.stderr.strip()} (collector log: {collector.log})")
    line = out.stdout.strip().splitlines()[-1]
    kv = dict(x.split("=", 1) for x in line.split(": ", 1)[1].split())
    return {
        "items/s": float(kv["items/s"]),
        "cpu_s_per_M": float(kv["cpu_s_per_M_items"]) if kv["cpu_s_per_M_items"] != "-" else None,
        "p50_ms": float(kv["p50_ms"]),
        "p99_ms": float(kv["p99_ms"]),
        "peak_rss_MiB": float(kv["peak_rss_MiB"]),
        "refused": int(kv["refused"]),
        "items": int(kv["items"]),
        "cpu_start_s": float(kv["cpu_start_s"]) if kv["cpu_start_s"] != "-" else None,
    }


def load_run(args, work, scenario, name, cmd, transport, signal_name, env=None, streams=1):
    """One load run. Its CPU figure counts from the start of the load to the collector's exit
    after SIGTERM: work a collector buffers (an open Parquet file, a batch) and does later
    counts too. The load window alone is kept as `cpu_s_per_M_window`."""
    c = Collector(work, name, cmd, env)
    try:
        r = loadgen(args, c, transport, signal_name, f"{scenario}/{name}", streams)
    finally:
        total = c.stop()
    r["cpu_s_per_M_window"] = r["cpu_s_per_M"]
    if total is not None and r["cpu_start_s"] is not None and r["items"] > 0:
        r["cpu_s_per_M"] = (total - r["cpu_start_s"]) / (r["items"] / 1e6)
    return r


def replay_run(work, archive, spans):
    cmd, cfg = otterline_config(work, "otterline-replay", "  nop: {}", "[nop]")
    t0 = time.perf_counter()
    with open(os.path.join(work, "replay.log"), "w") as log:
        p = subprocess.Popen(["taskset", "-c", "0", OTTERLINE, "replay", "--config", cfg, "--archive", archive],
                             stdout=subprocess.DEVNULL, stderr=log)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"harness: replay failed (status {status}); see {work}/replay.log")
    return {
        "items/s": spans / wall,
        "cpu_s_per_M": (ru.ru_utime + ru.ru_stime) / (spans / 1e6),
        "p50_ms": None,
        "p99_ms": None,
        "peak_rss_MiB": ru.ru_maxrss / 1024,
        "refused": 0,
    }


def idle_run(args, work):
    """Starts every idle subject at once, waits, reads RSS and the CPU used while idle."""
    subjects = []
    cmd = otterline_nop(work, "otterline-idle")
    subjects.append(("otterline", Collector(work, "otterline-idle", cmd)))
    cmd = otterline_nop(work, "otterline-idle-keep")
    subjects.append(("otterline (keep start-up pages)",
                     Collector(work, "otterline-idle-keep", cmd, {"OTTERLINE_KEEP_STARTUP_PAGES": "1"})))
    cmd, env = otterline_default(work, "otterline-idle-default")
    subjects.append(("otterline (default pipeline)", Collector(work, "otterline-idle-default", cmd, env)))
    subjects.append(("rotel", Collector(work, "rotel-idle", rotel(work, "rotel-idle", ["--exporter", "blackhole"]))))
    time.sleep(1.0)
    cpu0 = {n: proc_cpu_seconds(c.pid) for n, c in subjects}
    time.sleep(max(args.idle - 1.0, 0))
    results = {}
    for n, c in subjects:
        results[n] = {
            "idle_rss_MiB": (proc_status_kib(c.pid, "VmRSS") or 0) / 1024,
            "idle_cpu_ms_per_min": (proc_cpu_seconds(c.pid) - cpu0[n]) * 1000 * 60 / max(args.idle - 1.0, 1e-9),
        }
    for _, c in subjects:
        c.stop()
    return results


def median(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec):
    if v is not None:
        return format(v, spec)
    width = spec.split(".")[0]
    return "-".rjust(int(width)) if width.isdigit() else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="seconds of load per run (default 10)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions; medians are shown (default 3)")
    ap.add_argument("--connections", type=int, default=4, help="load generator connections (default 4)")
    ap.add_argument("--streams", default="1,32",
                    help="load shapes for scenarios a and c: requests in flight per connection, comma-separated "
                         "(default 1,32: one at a time, and 4 x 32 = 128 in flight as `h2load -c4 -m32` drives it)")
    ap.add_argument("--idle", type=float, default=30, help="seconds of idling in scenario e (default 30)")
    ap.add_argument("--replay-spans", type=int, default=2_000_000, help="spans in the scenario d archive")
    ap.add_argument("--scenarios", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    ap.add_argument("--json", help="also write the medians to this file")
    ap.add_argument("--also-otterline", action="append", default=[], metavar="LABEL=PATH",
                    help="a second otterline build to run right after each otterline run of scenarios a "
                         "and c, shown as otterline[LABEL] (e.g. dist=target/dist/otterline)")
    args = ap.parse_args()
    builds = [("otterline", OTTERLINE)]
    for spec in args.also_otterline:
        label, sep, path = spec.partition("=")
        if not sep or not os.access(path, os.X_OK):
            sys.exit(f"harness: --also-otterline wants LABEL=PATH to an executable, got {spec!r}")
        builds.append((f"otterline[{label}]", os.path.abspath(path)))
    scenarios = set(args.scenarios.split(","))
    if os.cpu_count() is None or os.cpu_count() < 2:
        sys.exit("harness: needs two CPUs (collector on one, load on the other)")

    work = tempfile.mkdtemp(prefix="otterline-bench-")
    runs = {}  # (scenario, subject) -> [result]

    def add(key, r):
        runs.setdefault(key, []).append(r)
        print(f"  {key[0]:<10} {key[1]:<12} items/s={r['items/s']:>10.0f} cpu_s/M={fmt(r['cpu_s_per_M'], '.3f')} "
              f"(load window only {fmt(r.get('cpu_s_per_M_window'), '.3f')}) "
              f"p99_ms={fmt(r['p99_ms'], '.2f')} peak_rss_MiB={r['peak_rss_MiB']:.1f} refused={r['refused']}",
              file=sys.stderr, flush=True)

    archive = None
    if "d" in scenarios:
        archive = os.path.join(work, "archive")
        subprocess.run([ARCHIVE_GEN, "--spans", str(args.replay_spans), "--days", "1", "--out", archive],
                       check=True, stdout=subprocess.DEVNULL)

    idle = []
    for rep in range(1, args.reps + 1):
        print(f"repetition {rep}/{args.reps}", file=sys.stderr, flush=True)
        shapes = [int(x) for x in args.streams.split(",") if x]
        shape = lambda m: "" if m == 1 else f" {args.connections}x{m}"
        if "a" in scenarios:
            for m in shapes:
                for transport, sig in (("grpc", "traces"), ("http", "traces"), ("grpc", "metrics"), ("grpc", "logs")):
                    if m != 1 and (transport, sig) != ("grpc", "traces"):
                        continue  # the second shape: the headline pair only
                    scen = f"a {sig}/{transport}{shape(m)}"
                    if (transport, sig) == ("grpc", "traces") and m == 1:
                        add((scen, "tonic sink"), load_run(args, work, scen, "sink", Cmd(
                            [SINK, "--listen", f"127.0.0.1:{(p := free_port())}"], p, p), transport, sig))
                    for subject, binary in builds:
                        with_binary(binary)
                        add((scen, subject), load_run(args, work, scen, "otterline", otterline_nop(work), transport, sig,
                                                      streams=m))
                    with_binary(builds[0][1])
                    add((scen, "rotel"), load_run(args, work, scen, "rotel",
                                                  rotel(work, "rotel", ["--exporter", "blackhole"]), transport, sig,
                                                  streams=m))
        if "b" in scenarios:
            sink_port = free_port()
            with open(os.path.join(work, "b-sink.log"), "w") as log:
                sink = subprocess.Popen(["taskset", "-c", "1", SINK, "--listen", f"127.0.0.1:{sink_port}"],
                                        stdout=subprocess.DEVNULL, stderr=log)
            sink.log = os.path.join(work, "b-sink.log")
            wait_port(sink_port, sink, "sink")
            try:
                add(("b forward", "otterline"),
                    load_run(args, work, "b", "otterline", otterline_forward(work, sink_port), "grpc", "traces"))
                add(("b forward", "rotel"), load_run(args, work, "b", "rotel", rotel(work, "rotel", [
                    "--exporter", "otlp", "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink_port}",
                    "--otlp-exporter-protocol", "grpc", "--otlp-exporter-compression", "gzip"]), "grpc", "traces"))
            finally:
                sink.send_signal(signal.SIGINT)
                sink.wait()
        if "c" in scenarios:
            for m in shapes:
                for i, (subject, binary) in enumerate(builds):
                    with_binary(binary)
                    cmd, env = otterline_default(work, f"default-{rep}-{i}-{m}")
                    add((f"c default{shape(m)}", subject),
                        load_run(args, work, "c", "otterline", cmd, "grpc", "traces", env, streams=m))
                with_binary(builds[0][1])
        if "d" in scenarios:
            add(("d replay", "otterline"), replay_run(work, archive, args.replay_spans))
        if "e" in scenarios:
            idle.append(idle_run(args, work))

    med = {k: {f: median(v, f) for f in ("items/s", "cpu_s_per_M", "p50_ms", "p99_ms", "peak_rss_MiB", "refused")}
           for k, v in runs.items()}
    print()
    print(f"Medians of {args.reps} repetition(s), {args.seconds:g} s of load each, {args.connections} connections; "
          f"collector on CPU 0, load on CPU 1.")
    print(f"{'scenario':<16} {'collector':<12} {'items/s':>10} {'x rotel':>8} {'CPU-s/M items':>14} {'x rotel':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'peak RSS MiB':>13} {'x rotel':>8}")
    for (scen, subj), m in med.items():
        r = med.get((scen, "rotel"))
        ratio = lambda f: (m[f] / r[f]) if (r and subj != "rotel" and m[f] and r[f]) else None
        print(f"{scen:<16} {subj:<12} {fmt(m['items/s'], '10.0f')} {fmt(ratio('items/s'), '8.2f')} "
              f"{fmt(m['cpu_s_per_M'], '14.3f')} {fmt(ratio('cpu_s_per_M'), '8.2f')} {fmt(m['p50_ms'], '7.2f')} "
              f"{fmt(m['p99_ms'], '7.2f')} {fmt(m['peak_rss_MiB'], '13.1f')} {fmt(ratio('peak_rss_MiB'), '8.2f')}")
        if m["refused"]:
            print(f"{'':<16} ^ {m['refused']:.0f} requests refused (retryable) in the median run")
    idle_med = {}
    if idle:
        print()
        print(f"{'e idle ' + format(args.idle, 'g') + ' s':<34} {'RSS MiB':>8} {'x rotel':>8} {'CPU ms/min':>11}")
        for n in idle[0]:
            rss = statistics.median(i[n]["idle_rss_MiB"] for i in idle)
            cpu = statistics.median(i[n]["idle_cpu_ms_per_min"] for i in idle)
            idle_med[n] = {"idle_rss_MiB": rss, "idle_cpu_ms_per_min": cpu}
        for n, v in idle_med.items():
            ratio = v["idle_rss_MiB"] / idle_med["rotel"]["idle_rss_MiB"] if n != "rotel" else None
            print(f"{n:<34} {v['idle_rss_MiB']:>8.1f} {fmt(ratio, '8.2f')} {v['idle_cpu_ms_per_min']:>11.1f}")

    print()
    print("Targets (medians, this run):")

    def check(label, value, limit, unit=""):
        if value is None or limit is None:
            print(f"  {label}: not measured")
            return
        print(f"  {label}: {value:.2f}{unit} (limit {limit:.2f}{unit}) {'MET' if value <= limit else 'MISSED'}")

    for m in [int(x) for x in args.streams.split(",") if x]:
        sh = "" if m == 1 else f" {args.connections}x{m}"
        a, ar = med.get((f"a traces/grpc{sh}", "otterline")), med.get((f"a traces/grpc{sh}", "rotel"))
        if a and ar:
            check(f"(a{sh}) CPU-s per M spans, otterline / rotel", a["cpu_s_per_M"] / ar["cpu_s_per_M"], 0.5, "x")
            check(f"(a{sh}) peak RSS, otterline / rotel", a["peak_rss_MiB"] / ar["peak_rss_MiB"], 0.5, "x")
        c = med.get((f"c default{sh}", "otterline"))
        if c and ar:
            check(f"(c{sh}) full pipeline CPU-s per M spans vs rotel pass-through", c["cpu_s_per_M"],
                  ar["cpu_s_per_M"], " s")
            check(f"(c{sh}) peak RSS", c["peak_rss_MiB"], 96.0, " MiB")
    d = med.get(("d replay", "otterline"))
    if d:
        check("(d) replay peak RSS", d["peak_rss_MiB"], 128.0, " MiB")
    if idle_med:
        check("(e) idle RSS", idle_med["otterline"]["idle_rss_MiB"], 10.0, " MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load": {f"{k[0]} | {k[1]}": v for k, v in med.items()}, "idle": idle_med,
                       "args": vars(args)}, f, indent=2)
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
