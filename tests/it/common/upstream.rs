//! Upstreams for the forwarding tests: a tonic OTLP/gRPC trace server (optionally TLS,
//! optionally requiring a client certificate, optionally slow) and an axum OTLP/HTTP
//! trace server that answers 400 to requests carrying a "poison" span. Both count every
//! span id they accept, so tests can check delivery exactly.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;

/// Span ids (trace id + span id) accepted, with how many times each was accepted, and the
/// last `x-tenant` header seen.
#[derive(Default, Clone)]
pub struct Received(Arc<Mutex<HashMap<Vec<u8>, u32>>>, Arc<Mutex<Option<String>>>);

impl Received {
    fn record(&self, req: &ExportTraceServiceRequest) {
        let mut m = self.0.lock().unwrap();
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let mut id = s.trace_id.clone();
                    id.extend_from_slice(&s.span_id);
                    *m.entry(id).or_default() += 1;
                }
            }
        }
    }

    /// The `x-tenant` header of the last request.
    pub fn tenant(&self) -> Option<String> {
        self.1.lock().unwrap().clone()
    }

    /// Distinct spans accepted.
    pub fn unique(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Whether the span (trace id, span id) arrived.
    pub fn has(&self, trace_id: &[u8], span_id: &[u8]) -> bool {
        let mut id = trace_id.to_vec();
        id.extend_from_slice(span_id);
        self.0.lock().unwrap().contains_key(&id)
    }

    /// Spans accepted more than once (extra copies).
    pub fn duplicates(&self) -> u64 {
        self.0.lock().unwrap().values().map(|&n| n as u64 - 1).sum()
    }

    /// Waits until `n` distinct spans arrived (or `limit` passed); returns the count.
    pub fn wait_for(&self, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && self.unique() < n {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.unique()
    }
}

#[derive(Clone)]
struct Traces {
    received: Received,
    /// Milliseconds each request takes; changeable while running.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let delay = self.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if let Some(t) = req.metadata().get("x-tenant").and_then(|v| v.to_str().ok()) {
            *self.received.1.lock().unwrap() = Some(t.to_string());
        }
        self.received.record(req.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// TLS for the gRPC upstream: its certificate and key, and the CA its clients must present.
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: Option<String>,
}

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub received: Received,
    pub addr: SocketAddr,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// An OTLP/gRPC trace server on `127.0.0.1:port` (0: any free port).
    pub fn grpc(port: u16, tls: Option<ServerTls>, delay: Duration) -> Upstream {
        let received = Received::default();
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(delay.as_millis() as u64));
        let svc = Traces { received: received.clone(), delay_ms: delay_ms.clone() };
        let (addr, stop, thread) = serve(port, move |listener, stop_rx| async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let mut builder = tonic::transport::Server::builder();
            if let Some(t) = tls {
                let mut cfg = tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(t.cert_pem, t.key_pem));
                if let Some(ca) = t.client_ca_pem {
                    cfg = cfg.client_ca_root(tonic::transport::Certificate::from_pem(ca));
                }
                builder = builder.tls_config(cfg).expect("server TLS");
            }
            builder
                .add_service(
                    TraceServiceServer::new(svc)
                        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                        .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
                        .max_decoding_message_size(64 << 20),
                )
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("upstream server");
        });
        Upstream { received, addr, delay_ms, stop: Some(stop), thread: Some(thread) }
    }

    /// Changes how long the gRPC upstream takes per request.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// An OTLP/HTTP trace server on `127.0.0.1:port`: 400 for requests with a span named
    /// `poison…` (nothing of such a request is kept), 200 otherwise.
    pub fn http_rejecting_poison(port: u16) -> (Upstream, Arc<std::sync::atomic::AtomicU64>) {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::post;
        let received = Received::default();
        let rejected_requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (r, rej) = (received.clone(), rejected_requests.clone());
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (r, rej) = (r.clone(), rej.clone());
            async move {
                let raw = match headers.get("content-encoding").and_then(|v| v.to_str().ok()) {
                    Some("gzip") => {
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).unwrap();
                        out
                    }
                    Some("zstd") => zstd::decode_all(&body[..]).unwrap(),
                    _ => body.to_vec(),
                };
                let req = ExportTraceServiceRequest::decode(&raw[..]).unwrap();
                let poisoned = req
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .flat_map(|ss| &ss.spans)
                    .any(|s| s.name.starts_with("poison"));
                if poisoned {
                    rej.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return (StatusCode::BAD_REQUEST, "poisoned span: invalid request".to_string().into_bytes());
                }
                r.record(&req);
                (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
            }
        };
        let (addr, stop, thread) = serve(port, move |listener, stop_rx| async move {
            let app = axum::Router::new().route("/v1/traces", post(handler));
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
                .expect("upstream server");
        });
        let delay_ms = Default::default();
        (Upstream { received, addr, delay_ms, stop: Some(stop), thread: Some(thread) }, rejected_requests)
    }
}

type Stop = tokio::sync::oneshot::Sender<()>;

/// Runs `server` on its own runtime thread with a listener on `127.0.0.1:port`; returns the
/// bound address, the stop sender, and the thread.
fn serve<F, Fut>(port: u16, server: F) -> (SocketAddr, Stop, std::thread::JoinHandle<()>)
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind upstream");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            server(listener, stop_rx).await;
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("upstream started");
    (addr, stop_tx, thread)
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A CA, and a server certificate for 127.0.0.1/localhost and a client certificate it signed (all PEM).
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

pub fn make_pki() -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Otterline test CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["otterline-client".to_string()]).unwrap();
    client_params.distinguished_name.push(DnType::CommonName, "otterline-client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}
