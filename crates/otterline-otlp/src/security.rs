//! TLS, mutual TLS and bearer-token authentication for the OTLP listeners.
//!
//! ```yaml
//! receivers:
//!   otlp:
//!     protocols:
//!       grpc:
//!         endpoint: 0.0.0.0:4317
//!         tls: {cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem}  # client_ca_file: mTLS
//!         auth: {bearer_token_file: /etc/otterline/token}   # or bearer_token: ${env:OTLP_TOKEN}
//! ```
//!
//! The `tls` keys are the Collector's (`cert_file`, `key_file`, `client_ca_file`,
//! `min_version`, `max_version`, `reload_interval`). `auth` takes the token itself (or a
//! file holding it) where the Collector names a `bearertokenauth` extension; requests
//! without `Authorization: Bearer <token>` get `UNAUTHENTICATED` / 401. Files are read when
//! the config is loaded, so a missing or malformed one is a config error naming its key.
//!
//! **Certificate rotation.** A [`TlsSource`] looks at its three files (modification time
//! and size) at most once per `reload_interval` (default one minute; `0s` turns it off),
//! when a connection arrives, and builds a new server config when one changed: new
//! connections get the new certificate, open ones keep theirs. A changed file that does
//! not load (say the key was written before the certificate) is logged once and the
//! previous config stays in use until a later change loads. The Collector reloads only
//! when `reload_interval` is set; watching by default is Otterline's choice, because
//! certificates rotated by cert-manager or ACME should not need a restart.
//!
//! Both OTLP listeners accept TLS connections through [`TlsSource::accept`] (gRPC feeds
//! them to tonic), so the two behave alike.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use otterline_core::units::Seconds;

/// `tls:` on a protocol.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// CA(s) that must have signed a client's certificate (PEM): mutual TLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// Highest TLS version accepted: `"1.2"` or `"1.3"` (default).
    #[serde(default)]
    pub max_version: Option<String>,
    /// How often the files are checked for a change (default `1m`; `0s`: never).
    #[serde(default)]
    pub reload_interval: Option<Seconds>,
}

/// `auth:` on a protocol (shared with Otterline's other listeners).
pub use otterline_core::auth::{AuthConfig, Token};

/// Default for `reload_interval`.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// A version key's value: TLS 1.2 or 1.3 (rustls has nothing older).
fn version(key: &'static str, v: &Option<String>, default: u8) -> Result<u8, (&'static str, String)> {
    match v.as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("1.2") => Ok(2),
        Some("1.3") => Ok(3),
        Some(v @ ("1.0" | "1.1")) => {
            Err((key, format!("TLS {v} is not supported (it is insecure); use \"1.2\" or \"1.3\"")))
        }
        Some(v) => Err((key, format!("unknown TLS version {v:?}; use \"1.2\" or \"1.3\""))),
    }
}

/// A file's modification time and size, `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &PathBuf) -> Stamp {
    std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

impl TlsConfig {
    fn paths(&self) -> Vec<&PathBuf> {
        [Some(&self.cert_file), Some(&self.key_file), self.client_ca_file.as_ref()].into_iter().flatten().collect()
    }

    /// Reads the files and builds the server config; `Err((key, message))` names the key at fault.
    fn build(&self) -> Result<rustls::ServerConfig, (&'static str, String)> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |key: &'static str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| (key, format!("cannot read {}: {e}", p.display())))
        };
        let cert_pem = read("cert_file", &self.cert_file)?;
        let key_pem = read("key_file", &self.key_file)?;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| ("cert_file", format!("not a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(("cert_file", format!("{} holds no certificate", self.cert_file.display())));
        }
        let key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| ("key_file", format!("not a PEM private key: {e}")))?;
        let min = version("min_version", &self.min_version, 2)?;
        let max = version("max_version", &self.max_version, 3)?;
        if min > max {
            return Err(("min_version", "min_version is above max_version".into()));
        }
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ("min_version", e.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let pem = read("client_ca_file", path)?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| ("client_ca_file", format!("not PEM: {e}")))?;
                    roots.add(c).map_err(|e| ("client_ca_file", e.to_string()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| ("client_ca_file", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder
            .with_single_cert(certs, key)
            .map_err(|e| ("cert_file", format!("the certificate and key_file do not go together: {e}")))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// Loads the files into a [`TlsSource`]; `Err((key, message))` names the key at fault.
    pub fn load(&self) -> Result<TlsSource, (&'static str, String)> {
        let config = Arc::new(self.build()?);
        let stamps = self.paths().into_iter().map(stamp).collect();
        Ok(TlsSource {
            cfg: self.clone(),
            every: self.reload_interval.map_or(RELOAD_INTERVAL, |s| s.0),
            state: Mutex::new(Loaded { config, stamps, checked: Instant::now(), failed: None }),
        })
    }
}

/// A listener's TLS server config, following its files (see the module docs).
pub struct TlsSource {
    cfg: TlsConfig,
    every: Duration,
    state: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    stamps: Vec<Stamp>,
    checked: Instant,
    /// The file stamps that last failed to load (logged once).
    failed: Option<Vec<Stamp>>,
}

impl TlsSource {
    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.cfg.client_ca_file.is_some()
    }

    /// The server config for a new connection, reloaded first if a file changed.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !self.every.is_zero() && st.checked.elapsed() >= self.every {
            st.checked = Instant::now();
            let stamps: Vec<Stamp> = self.cfg.paths().into_iter().map(stamp).collect();
            if stamps != st.stamps && st.failed.as_ref() != Some(&stamps) {
                match self.cfg.build() {
                    Ok(c) => {
                        st.config = Arc::new(c);
                        st.stamps = stamps;
                        st.failed = None;
                        tracing::info!(cert_file = %self.cfg.cert_file.display(), "TLS: reloaded the changed certificate files");
                    }
                    Err((key, e)) => {
                        st.failed = Some(stamps);
                        tracing::warn!(key, error = %e, "TLS: a certificate file changed but does not load; still using the previous one");
                    }
                }
            }
        }
        st.config.clone()
    }

    /// A TLS handshake on `tcp` with the current config (bounded by `HANDSHAKE_TIMEOUT`).
    pub async fn accept(
        &self,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
        }
    }
}

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and completes their TLS handshakes concurrently, yielding the
/// finished ones (a failed handshake is logged at debug and dropped) until `shutdown`.
pub fn incoming(
    listener: tokio::net::TcpListener,
    source: Arc<TlsSource>,
    shutdown: tokio_util::sync::CancellationToken,
    what: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "{what}: accepting a connection failed");
                        continue;
                    }
                },
            };
            let (source, tx) = (source.clone(), tx.clone());
            tokio::spawn(async move {
                match source.accept(tcp).await {
                    Ok(tls) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "{what}: TLS handshake failed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// What a listener enforces.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<Arc<TlsSource>>,
    pub token: Option<Arc<Token>>,
    /// End-to-end acknowledgements (the receiver's `acknowledgements`).
    pub acknowledgements: bool,
}
