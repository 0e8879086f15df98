//! A small JSON-over-HTTP/1.1 client for the API: `https://` (TLS by rustls, the system's
//! roots plus any added with [`add_trusted_root`]) anywhere, plain `http://` only to this
//! machine (a local stack), so no bearer token or code crosses a network in the clear.

use crate::ClientError;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (the API's are a few KiB; the PCR manifest is the largest).
const MAX_ANSWER: usize = 1024 * 1024;

/// Where a base URL points.
struct Target<'a> {
    tls: bool,
    /// `host:port` as written (the `Host` header).
    authority: &'a str,
    /// The host alone (brackets removed from an IPv6 literal).
    host: &'a str,
    port: u16,
}

fn target(base: &str) -> Result<Target<'_>, ClientError> {
    let unsupported = || {
        ClientError::Http(format!(
            "unsupported API URL {base:?} (https://host[:port], or http://127.0.0.1:port for a local stack)"
        ))
    };
    let (tls, rest) = if let Some(rest) = base.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = base.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(unsupported());
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return Err(unsupported());
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(unsupported)?;
        match after {
            "" => (host, default_port),
            _ => {
                let port = after.strip_prefix(':').ok_or_else(unsupported)?;
                (host, port.parse::<u16>().map_err(|_| unsupported())?)
            }
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| unsupported())?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(unsupported());
    }
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !tls && !loopback {
        return Err(ClientError::Http(format!(
            "refusing plain http:// to {host}: tokens and codes would cross the network in the clear (use https://)"
        )));
    }
    Ok(Target {
        tls,
        authority,
        host,
        port,
    })
}

/// Roots added to the system's for `https://` APIs (a private deployment's CA), and the TLS
/// configuration made from them on first use (made again after a root is added). One lock,
/// so an added root is never lost to a configuration being built at the same time.
struct TlsState {
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
    config: Option<Arc<rustls::ClientConfig>>,
}

static TLS: Mutex<TlsState> = Mutex::new(TlsState {
    extra: Vec::new(),
    config: None,
});

fn tls_state() -> std::sync::MutexGuard<'static, TlsState> {
    TLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Trusts the certificates of `pem` (one or more) for `https://` APIs, besides the system's
/// roots, for the rest of this process.
pub fn add_trusted_root(pem: &str) -> Result<(), ClientError> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientError::Http(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Http("no certificate in the PEM text".into()));
    }
    let mut state = tls_state();
    state.extra.extend(certs);
    state.config = None;
    Ok(())
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut state = tls_state();
    if let Some(c) = &state.config {
        return Ok(c.clone());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(state.extra.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Http(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);
    state.config = Some(config.clone());
    Ok(config)
}

/// Sends one request; a 2xx JSON body on success, the API's JSON error as [`ClientError::Api`].
pub async fn call(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<(u16, Bytes), ClientError> {
    let target = target(base)?;
    let authority = target.authority;
    let fut = async {
        // Plain HTTP goes to this machine only: `localhost` is not left to name resolution.
        let connected = if !target.tls && target.host == "localhost" {
            match tokio::net::TcpStream::connect(("127.0.0.1", target.port)).await {
                Ok(s) => Ok(s),
                Err(_) => tokio::net::TcpStream::connect(("::1", target.port)).await,
            }
        } else {
            tokio::net::TcpStream::connect((target.host, target.port)).await
        };
        let stream =
            connected.map_err(|e| ClientError::Http(format!("connecting to {authority}: {e}")))?;
        if target.tls {
            let name = rustls::pki_types::ServerName::try_from(target.host.to_owned())
                .map_err(|_| ClientError::Http(format!("{} is not a host name", target.host)))?;
            let stream = tokio_rustls::TlsConnector::from(tls_config()?)
                .connect(name, stream)
                .await
                .map_err(|e| ClientError::Http(format!("TLS with {authority}: {e}")))?;
            exchange(stream, authority, method, path, bearer, body).await
        } else {
            exchange(stream, authority, method, path, bearer, body).await
        }
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| ClientError::Http(format!("{authority} did not answer in time")))?
}

/// One HTTP/1.1 request and its answer over `stream`.
async fn exchange<S>(
    stream: S,
    authority: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<(u16, Bytes), ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    if let Some(token) = bearer {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let bytes = match body {
        Some(v) => {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            serde_json::to_vec(v).map_err(|e| ClientError::Http(e.to_string()))?
        }
        None => Vec::new(),
    };
    let req = req
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = res.status().as_u16();
    let body = http_body_util::Limited::new(res.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| ClientError::Http(format!("reading the answer: {e}")))?
        .to_bytes();
    Ok((status, body))
}

/// [`call`], requiring a 2xx JSON answer.
pub async fn json(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    let (status, bytes) = call(base, method, path, bearer, body).await?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        ClientError::Http(format!(
            "{method} {path}: HTTP {status} with a non-JSON body"
        ))
    })?;
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let field = |k: &str| value["error"][k].as_str().unwrap_or("").to_owned();
    Err(ClientError::Api {
        status,
        code: field("code"),
        message: field("message"),
    })
}

/// [`call`] for a text document (2xx required).
pub async fn text(base: &str, path: &str) -> Result<String, ClientError> {
    let (status, bytes) = call(base, "GET", path, None, None).await?;
    if !(200..300).contains(&status) {
        return Err(ClientError::Api {
            status,
            code: "not_available".into(),
            message: format!("GET {path}"),
        });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| ClientError::Http("not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_local_http() {
        for (url, tls, host, port) in [
            ("https://api.vettid.dev", true, "api.vettid.dev", 443),
            ("https://api.vettid.dev:8443/", true, "api.vettid.dev", 8443),
            ("http://127.0.0.1:8080", false, "127.0.0.1", 8080),
            ("http://localhost:8080", false, "localhost", 8080),
            ("http://[::1]:8080", false, "::1", 8080),
            ("https://[2001:db8::1]:443", true, "2001:db8::1", 443),
            ("https://[2001:db8::1]", true, "2001:db8::1", 443),
        ] {
            let t = target(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((t.tls, t.host, t.port), (tls, host, port), "{url}");
        }
        for url in [
            "http://api.vettid.dev",
            "http://192.0.2.1:8080",
            "ftp://x",
            "https://",
            "https://a/b",
            "https://user@host",
            "https://host:notaport",
        ] {
            assert!(target(url).is_err(), "{url}");
        }
    }
}
