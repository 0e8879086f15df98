//! A small JSON-over-HTTP/1.1 client for the API (plain `http://` only, for local stacks; the
//! production app speaks HTTPS through its platform stack).

use crate::ClientError;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// `http://host:port` split out of a base URL.
fn authority(base: &str) -> Result<&str, ClientError> {
    base.strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| {
            ClientError::Http(format!("unsupported API URL {base:?} (http://host:port)"))
        })
}

/// Sends one request; a 2xx JSON body on success, the API's JSON error as [`ClientError::Api`].
pub async fn call(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<(u16, Bytes), ClientError> {
    let authority = authority(base)?;
    let fut = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| ClientError::Http(format!("connecting to {authority}: {e}")))?;
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
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| ClientError::Http(format!("{authority} did not answer in time")))?
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
