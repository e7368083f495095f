//! Listening sockets: endpoint syntax and binding, shared by every server component.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ident::ComponentError;

/// Parses `host:port` (a bare `:port` means every interface, as in the Collector).
pub fn parse_endpoint(text: &str) -> Result<String, String> {
    let t = text.trim();
    let full = if t.starts_with(':') { format!("0.0.0.0{t}") } else { t.to_string() };
    let Some((host, port)) = full.rsplit_once(':') else {
        return Err(format!("endpoint {text:?} needs a port, e.g. \"127.0.0.1:4317\""));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("endpoint {text:?} is not host:port with a port from 0 to 65535"));
    }
    Ok(full)
}

pub async fn bind(endpoint: &str, what: &str) -> Result<tokio::net::TcpListener, ComponentError> {
    bind_secured(endpoint, what, false, false).await
}

/// [`bind`] for a listener that may have TLS and authentication: the warning about a
/// listener beyond loopback names what it lacks, and there is none when it has both.
pub async fn bind_secured(
    endpoint: &str,
    what: &str,
    tls: bool,
    auth: bool,
) -> Result<tokio::net::TcpListener, ComponentError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| ComponentError::new(format!("cannot resolve {what} endpoint {endpoint}: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                if let Some(w) = exposure_warning(addr, what, tls, auth) {
                    tracing::warn!(endpoint = %addr, "{w}");
                }
                return Ok(l);
            }
            Err(e) => last = Some(format!("cannot listen on {addr} for {what}: {e}")),
        }
    }
    Err(ComponentError::new(last.unwrap_or_else(|| format!("{what} endpoint {endpoint} resolved to no address"))))
}

/// What to say about a listener bound beyond loopback without both TLS and authentication:
/// whoever can reach the address can use it (or read what is sent to it).
pub fn exposure_warning(addr: SocketAddr, what: &str, tls: bool, auth: bool) -> Option<String> {
    let missing = match (tls, auth) {
        (true, true) => return None,
        (false, false) => "TLS or authentication",
        (false, true) => "TLS (the token and the data cross the network in clear)",
        (true, false) => "authentication (anyone who can reach it can send data)",
    };
    (!addr.ip().is_loopback()).then(|| {
        format!("{what} listens beyond loopback without {missing}: anyone who can reach {addr} can use it; keep it on 127.0.0.1, configure `tls` and `auth`, or put it behind a proxy or firewall that authenticates")
    })
}

/// How long a server waits, after shutdown starts, for clients to finish their
/// requests and close their connections before it stops waiting for them.
pub const CONNECTION_GRACE: Duration = Duration::from_secs(5);

/// Runs a server future that shuts down gracefully when `shutdown` fires, but
/// stops waiting for lingering client connections after [`CONNECTION_GRACE`].
/// Requests still open then were never acknowledged, so clients retry them.
pub async fn serve_with_grace<E>(
    server: impl Future<Output = Result<(), E>>,
    shutdown: CancellationToken,
    what: &str,
) -> Result<(), E> {
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(CONNECTION_GRACE).await } => {
            tracing::warn!("{what}: client connections still open {CONNECTION_GRACE:?} after shutdown began; no longer waiting for them");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_beyond_loopback_are_warned_about() {
        for a in ["127.0.0.1:4317", "[::1]:4317"] {
            assert_eq!(exposure_warning(a.parse().unwrap(), "OTLP/gRPC", false, false), None, "{a}");
        }
        for a in ["0.0.0.0:4317", "10.1.2.3:13134", "[::]:8888"] {
            let w = exposure_warning(a.parse().unwrap(), "dashboard", false, false).unwrap();
            assert!(w.starts_with("dashboard listens beyond loopback without TLS or authentication"), "{w}");
        }
        assert_eq!(exposure_warning("0.0.0.0:4317".parse().unwrap(), "OTLP/gRPC", true, true), None);
        let w = exposure_warning("0.0.0.0:4317".parse().unwrap(), "OTLP/gRPC", true, false).unwrap();
        assert!(w.contains("without authentication"), "{w}");
    }

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("127.0.0.1:4317").unwrap(), "127.0.0.1:4317");
        assert_eq!(parse_endpoint(":4317").unwrap(), "0.0.0.0:4317");
        assert_eq!(parse_endpoint("localhost:0").unwrap(), "localhost:0");
        assert!(parse_endpoint("127.0.0.1").unwrap_err().contains("needs a port"));
        assert!(parse_endpoint("h:99999").is_err());
    }
}
