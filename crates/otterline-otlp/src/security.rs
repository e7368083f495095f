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
//! The `tls` keys are the Collector's. `auth` takes the token itself (or a file holding it)
//! where the Collector names a `bearertokenauth` extension; requests without
//! `Authorization: Bearer <token>` get `UNAUTHENTICATED` / 401. Files are read when the
//! config is loaded, so a missing or malformed one is a config error naming its key; a
//! change takes a restart.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

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
}

/// `auth:` on a protocol (shared with Otterline's other listeners).
pub use otterline_core::auth::{AuthConfig, Token};

/// TLS material, read and checked when the config is loaded.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl TlsConfig {
    /// Reads the files; `Err((key, message))` names the key at fault.
    pub fn load(&self) -> Result<TlsMaterial, (&'static str, String)> {
        let read = |key: &'static str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| (key, format!("cannot read {}: {e}", p.display())))
        };
        let m = TlsMaterial {
            cert_pem: read("cert_file", &self.cert_file)?,
            key_pem: read("key_file", &self.key_file)?,
            client_ca_pem: self.client_ca_file.as_ref().map(|p| read("client_ca_file", p)).transpose()?,
        };
        m.rustls().map_err(|e| ("cert_file", e))?;
        Ok(m)
    }
}

impl TlsMaterial {
    /// The rustls server config (HTTP/2 and HTTP/1.1 offered by ALPN).
    pub fn rustls(&self) -> Result<rustls::ServerConfig, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cert_file is not a PEM certificate chain: {e}"))?;
        if certs.is_empty() {
            return Err("cert_file holds no certificate".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| format!("key_file is not a PEM private key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(pem) {
                    let c = c.map_err(|e| format!("client_ca_file is not PEM: {e}"))?;
                    roots.add(c).map_err(|e| format!("client_ca_file: {e}"))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("client_ca_file: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut cfg = builder.with_single_cert(certs, key).map_err(|e| format!("cert_file and key_file: {e}"))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// What a listener enforces.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<TlsMaterial>,
    pub token: Option<Arc<Token>>,
    /// End-to-end acknowledgements (the receiver's `acknowledgements`).
    pub acknowledgements: bool,
}
