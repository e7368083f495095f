//! TLS, mutual TLS and bearer tokens on the OTLP receiver, with the Python SDK as the
//! client (certificates made by the test) and raw Rust clients for what must be refused.

use crate::common;

use std::process::Command;

use common::upstream::make_pki;
use common::Instance;

/// Writes the PKI's files into `dir` and returns the receiver config with TLS and a token
/// on both protocols (`client_ca_file` when `mtls`).
fn config(dir: &std::path::Path, mtls: bool) -> String {
    let pki = make_pki();
    for (name, pem) in [
        ("ca.pem", &pki.ca_pem),
        ("server.pem", &pki.server_cert),
        ("server.key", &pki.server_key),
        ("client.pem", &pki.client_cert),
        ("client.key", &pki.client_key),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
    std::fs::write(dir.join("token"), "s3cret-token\n").unwrap();
    let d = dir.display();
    let ca = if mtls { format!(", client_ca_file: \"{d}/ca.pem\"") } else { String::new() };
    let tls = format!("{{cert_file: \"{d}/server.pem\", key_file: \"{d}/server.key\"{ca}}}");
    let auth = format!("{{bearer_token_file: \"{d}/token\"}}");
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{{{GRPC}}}}", tls: {tls}, auth: {auth}}}
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}", tls: {tls}, auth: {auth}}}
exporters:
  json: {{path: "{{{{DIR}}}}/json", flush_interval: 100ms}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [json]}}
    logs: {{receivers: [otlp], exporters: [json]}}
    metrics: {{receivers: [otlp], exporters: [json]}}
"#
    )
}

/// The Python SDK over `protocol` with the CA (and client certificate) from the SDK's
/// standard environment; `token` as `OTEL_EXPORTER_OTLP_HEADERS`.
fn python(inst: &Instance, certs: &std::path::Path, protocol: &str, token: &str, client_cert: bool) -> (bool, String) {
    let port = if protocol == "grpc" { inst.grpc } else { inst.http };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_otel.py");
    let mut cmd = Command::new(common::python());
    cmd.args([script, "--protocol", protocol, "--endpoint", &format!("https://localhost:{port}"), "--tls"])
        .args(["--service", &format!("tls-{protocol}"), "--spans", "7", "--logs", "1"])
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", certs.join("ca.pem"))
        .env("OTEL_EXPORTER_OTLP_HEADERS", format!("authorization=Bearer%20{token}"))
        .env("OTEL_BSP_EXPORT_TIMEOUT", "2000")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "2")
        // `requests` lets these override a session's own CA file (the SDK's certificate).
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE");
    if client_cert {
        cmd.env("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", certs.join("client.pem"))
            .env("OTEL_EXPORTER_OTLP_CLIENT_KEY", certs.join("client.key"));
    }
    let out = cmd.output().unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ok = out.status.success() && text.contains("\"failures\": []");
    (ok, text)
}

#[test]
fn mutual_tls_and_a_bearer_token_over_grpc_and_http_with_the_python_sdk() {
    let certs = tempfile::tempdir().unwrap();
    let mut inst = Instance::start(&config(certs.path(), true));
    for protocol in ["grpc", "http"] {
        let (ok, out) = python(&inst, certs.path(), protocol, "s3cret-token", true);
        assert!(ok, "{protocol}: {out}");
        // A wrong token is refused; so is a client without a certificate.
        let (ok, out) = python(&inst, certs.path(), protocol, "wrong", true);
        assert!(!ok, "{protocol} with a wrong token was accepted: {out}");
        let (ok, out) = python(&inst, certs.path(), protocol, "s3cret-token", false);
        assert!(!ok, "{protocol} without a client certificate was accepted: {out}");
    }
    let log = inst.stderr();
    assert!(log.contains("OTLP/gRPC listening") && log.contains("tls=true mtls=true auth=true"), "{log}");
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let spans = inst.spans();
    assert_eq!(spans.len(), 14, "7 spans per protocol, only from the authorised runs");
}

#[test]
fn tls_with_a_token_refuses_plain_text_and_missing_tokens() {
    common::crypto();
    let certs = tempfile::tempdir().unwrap();
    let mut inst = Instance::start(&config(certs.path(), false));
    let ca = std::fs::read(certs.path().join("ca.pem")).unwrap();
    let client = |token: Option<&str>| {
        let mut b = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap()
            .post(format!("https://localhost:{}/v1/traces", inst.http))
            .header("Content-Type", "application/json")
            .body(r#"{"resourceSpans":[]}"#);
        if let Some(t) = token {
            b = b.header("Authorization", format!("Bearer {t}"));
        }
        b.send()
    };
    assert_eq!(client(Some("s3cret-token")).unwrap().status().as_u16(), 200);
    let r = client(None).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers().get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(client(Some("s3cret")).unwrap().status().as_u16(), 401);
    // Plain HTTP to the TLS port gets no OTLP answer.
    let plain = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", inst.http))
        .header("Content-Type", "application/json")
        .body("{}")
        .send();
    assert!(plain.is_err() || plain.unwrap().status().as_u16() != 200);
    // gRPC without the token: UNAUTHENTICATED.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&ca))
            .domain_name("localhost");
        let channel = tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", inst.grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = TraceServiceClient::new(channel);
        let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::default();
        let err = c.export(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    });
    assert!(inst.terminate().success(), "{}", inst.stderr());
}

/// The dashboard (page, API, event stream), a health endpoint and `/metrics` behind their
/// bearer tokens: 401 without, 200 with the header, and the page and its stream with
/// `?token=`.
#[test]
fn dashboard_health_and_self_metrics_require_their_token() {
    let health2 = common::free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
exporters:
  nop: {{}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
  health_check/secured: {{endpoint: "127.0.0.1:{health2}", auth: {{bearer_token: "h-token"}}}}
  dashboard: {{endpoint: "127.0.0.1:{{{{DASHBOARD}}}}", auth: {{bearer_token: "d token"}}}}
service:
  extensions: [health_check, health_check/secured, dashboard]
  telemetry:
    metrics: {{auth: {{bearer_token: "m-token"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [nop]}}
"#
    );
    let mut inst = Instance::start(&config);
    let get = |port: u16, path: &str, token: Option<&str>| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        head.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).unwrap_or(0)
    };
    let d = inst.dashboard;
    assert_eq!(get(d, "/api/summary", None), 401);
    assert_eq!(get(d, "/api/summary", Some("wrong")), 401);
    assert_eq!(get(d, "/api/summary", Some("d token")), 200);
    assert_eq!(get(d, "/", None), 401);
    assert_eq!(get(d, "/?token=d%20token", None), 200);
    assert_eq!(get(d, "/api/stream?token=d+token", None), 200);
    assert_eq!(get(health2, "/", None), 401);
    assert_eq!(get(health2, "/", Some("h-token")), 200);
    assert_eq!(get(inst.metrics, "/metrics", None), 401);
    assert_eq!(get(inst.metrics, "/metrics", Some("m-token")), 200);
    assert!(inst.terminate().success(), "{}", inst.stderr());
}

/// A TLS handshake with a client that trusts only `ca_pem` and offers only `versions`;
/// the negotiated version, or why it failed.
fn handshake(
    port: u16,
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use std::io::Write;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), "localhost".try_into().unwrap()).unwrap();
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    Ok(format!("{:?}", tls.conn.protocol_version().unwrap()))
}

/// `min_version` refuses older clients on both protocols; replaced certificate files are
/// picked up for new connections within `reload_interval`, and a replacement that does not
/// load is logged and leaves the previous certificate in use.
#[test]
fn certificates_reload_when_their_files_change_and_min_version_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = make_pki();
    std::fs::write(d.join("server.pem"), &old.server_cert).unwrap();
    std::fs::write(d.join("server.key"), &old.server_key).unwrap();
    let tls = format!(
        "{{cert_file: \"{0}/server.pem\", key_file: \"{0}/server.key\", min_version: \"1.3\", reload_interval: 1s}}",
        d.display()
    );
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{{{GRPC}}}}", tls: {tls}}}
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}", tls: {tls}}}
exporters:
  nop: {{}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [nop]}}
"#
    );
    let mut inst = Instance::start(&config);
    let (tls12, tls13) = (&rustls::version::TLS12, &rustls::version::TLS13);
    for port in [inst.grpc, inst.http] {
        assert_eq!(handshake(port, &old.ca_pem, &[tls12, tls13]).as_deref(), Ok("TLSv1_3"));
        let e = handshake(port, &old.ca_pem, &[tls12]).unwrap_err();
        assert!(e.contains("ProtocolVersion") || e.contains("alert"), "TLS 1.2 refused: {e}");
    }
    // New certificate files from another CA.
    let new = make_pki();
    std::fs::write(d.join("server.key"), &new.server_key).unwrap();
    std::fs::write(d.join("server.pem"), &new.server_cert).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while handshake(inst.http, &new.ca_pem, &[tls13]).is_err() {
        assert!(std::time::Instant::now() < deadline, "the new certificate was not picked up");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for port in [inst.grpc, inst.http] {
        assert!(handshake(port, &new.ca_pem, &[tls13]).is_ok(), "port {port} serves the new certificate");
        assert!(handshake(port, &old.ca_pem, &[tls13]).is_err(), "port {port} no longer serves the old one");
    }
    // A broken replacement: logged, and the last good certificate stays.
    std::fs::write(d.join("server.pem"), "not a certificate").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for port in [inst.grpc, inst.http] {
        assert!(handshake(port, &new.ca_pem, &[tls13]).is_ok(), "port {port} keeps the last good certificate");
    }
    assert!(inst.terminate().success());
    let log = inst.stderr();
    assert!(log.contains("reloaded the changed certificate files"), "{log}");
    assert!(log.contains("does not load; still using the previous one"), "{log}");
}

#[test]
fn unsupported_tls_versions_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki();
    std::fs::write(dir.path().join("s.pem"), &pki.server_cert).unwrap();
    std::fs::write(dir.path().join("s.key"), &pki.server_key).unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        tls: {{cert_file: {0}/s.pem, key_file: {0}/s.key, min_version: \"1.1\"}}\nexporters:\n  nop: {{}}\nservice:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [nop]}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(common::BIN).args(["validate", "--config", path.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("tls.min_version") && err.contains("TLS 1.1 is not supported"), "{err}");
}

/// The Rust SDK over gRPC with TLS, a client certificate and the token: its spans arrive;
/// without the token they do not.
#[test]
fn the_rust_sdk_sends_over_mutual_tls_with_a_token() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    let certs = tempfile::tempdir().unwrap();
    let mut inst = Instance::start(&config(certs.path(), true));
    let read = |name: &str| std::fs::read_to_string(certs.path().join(name)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _guard = rt.enter();
    let send = |token: &str, service: &str| {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")))
            .identity(tonic::transport::Identity::from_pem(read("client.pem"), read("client.key")))
            .domain_name("localhost");
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("https://localhost:{}", inst.grpc))
            .with_tls_config(tls)
            .with_metadata(metadata)
            .build()
            .unwrap();
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(service.to_string()).build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("tls-test");
        for i in 0..5 {
            tracer.in_span(format!("op-{i}"), |_| {});
        }
        let flushed = provider.force_flush();
        let _ = provider.shutdown();
        flushed
    };
    assert!(send("s3cret-token", "rust-tls").is_ok());
    assert!(send("wrong", "rust-tls-wrong").is_err(), "a wrong token is refused");
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let services: Vec<String> = inst
        .json_batches(otterline_core::Signal::Traces)
        .iter()
        .flat_map(|b| match b {
            otterline_core::Batch::Traces(r) => r.resource_spans.clone(),
            _ => vec![],
        })
        .flat_map(|rs| {
            let name = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.clone())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()).map(move |_| name.clone()).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(services.len(), 5, "{services:?}");
    assert!(services.iter().all(|s| s.contains("rust-tls") && !s.contains("wrong")), "{services:?}");
}
