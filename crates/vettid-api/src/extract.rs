//! Request extractors whose every rejection is an [`ApiError`] in the JSON shape, never
//! axum's plain-text rejections: bad JSON, a wrong content type, unknown fields and wrong
//! types are all 400 `bad_request`; a body over the limit is 413.

use crate::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A JSON request body of type `T` (which should be `#[serde(deny_unknown_fields)]`).
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::bad_request(
                "expected a JSON body (Content-Type: application/json)",
            ));
        }
        let bytes =
            Bytes::from_request(req, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::PayloadTooLarge
                    } else {
                        ApiError::bad_request("could not read the request body")
                    }
                })?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::bad_request(json_error_message(&e)))
    }
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A client-facing description of a JSON error: what is wrong and where, cut short so a huge
/// value is not echoed back.
fn json_error_message(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "malformed JSON".to_owned(),
        Category::Data => {
            let full = e.to_string();
            // serde_json appends " at line L column C"; keep the description only.
            let description = full.split(" at line ").next().unwrap_or(&full);
            let mut s: String = description.chars().take(160).collect();
            if s.len() < description.len() {
                s.push('…');
            }
            format!("invalid request: {s}")
        }
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Query parameters of type `T`; a malformed query is 400.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|_| ApiError::bad_request("invalid query parameters"))
    }
}

/// One path parameter as a string; an undecodable one is 400.
pub(crate) struct ApiPath(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|_| ApiError::bad_request("invalid path parameter"))
    }
}

/// The client's address for rate limiting. Taken from the connection
/// (`into_make_service_with_connect_info`); without one (a router called directly) every
/// request counts as `0.0.0.0`. When the peer is a configured trusted proxy
/// ([`crate::ApiConfig::trusted_proxies`]), the client is the nearest `X-Forwarded-For` hop
/// that is not one (see [`forwarded_client`]); from any other peer the header is ignored, so
/// no client can choose the address it is counted under.
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl FromRequestParts<crate::app::App> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &crate::app::App,
    ) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
            .to_canonical();
        let proxies = &app.state.config.trusted_proxies;
        if !proxies.iter().any(|p| p.to_canonical() == peer) {
            return Ok(ClientIp(peer));
        }
        // Bytes that are not text do not hide the hops a proxy appended after them.
        let values: Vec<String> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let hops: Vec<&str> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        Ok(ClientIp(forwarded_client(peer, &hops, proxies)))
    }
}

/// Walks `X-Forwarded-For` from the nearest hop back: each trusted proxy passes the question
/// on to the hop before it; the first hop that is not a trusted proxy is the client. A hop
/// that is not an address ends the walk at the proxy that added it (it cannot be vouched
/// for), as does running out of hops.
pub(crate) fn forwarded_client(peer: IpAddr, hops: &[&str], proxies: &[IpAddr]) -> IpAddr {
    let trusted = |ip: &IpAddr| proxies.iter().any(|p| p.to_canonical() == *ip);
    let mut client = peer.to_canonical();
    for hop in hops.iter().rev() {
        if !trusted(&client) {
            break;
        }
        match hop_address(hop) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// The address of one `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:443`, canonical (IPv4-mapped IPv6 as IPv4).
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

/// The token of an `Authorization: Bearer <token>` header, or 401.
pub(crate) fn bearer(parts: &Parts) -> Result<crate::secret::Secret, ApiError> {
    bearer_of(&parts.headers)
}

/// As [`bearer`], from the headers.
pub(crate) fn bearer_of(
    headers: &axum::http::HeaderMap,
) -> Result<crate::secret::Secret, ApiError> {
    let missing = ApiError::Unauthorized("missing bearer token");
    let value = headers.get(AUTHORIZATION).ok_or(missing)?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::Unauthorized("malformed Authorization header"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || crate::validate::token_shape("token", token).is_err()
    {
        return Err(ApiError::Unauthorized("malformed Authorization header"));
    }
    Ok(crate::secret::Secret::from_client(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_client_is_the_nearest_hop_no_trusted_proxy_vouches_for() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        let client = |peer: &str, hops: &[&str]| forwarded_client(ip(peer), hops, &proxies);
        // Through one proxy, and through two.
        assert_eq!(client("10.0.0.1", &["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            client("10.0.0.1", &["203.0.113.7", "10.0.0.2"]),
            ip("203.0.113.7")
        );
        // A client that writes its own header gets only its own address counted: the
        // proxy appends the real one last.
        assert_eq!(
            client("10.0.0.1", &["198.51.100.1", "203.0.113.7"]),
            ip("203.0.113.7")
        );
        // A peer that is not a proxy is the client, whatever it says.
        assert_eq!(client("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        // Garbage or nothing: the proxy itself.
        assert_eq!(client("10.0.0.1", &["not an address"]), ip("10.0.0.1"));
        assert_eq!(client("10.0.0.1", &["unknown"]), ip("10.0.0.1"));
        assert_eq!(client("10.0.0.1", &[]), ip("10.0.0.1"));
        // Ports, brackets and IPv4-mapped forms, of hops and of the proxy itself.
        for hop in ["203.0.113.7:4711", "::ffff:203.0.113.7"] {
            assert_eq!(client("10.0.0.1", &[hop]), ip("203.0.113.7"), "{hop}");
        }
        assert_eq!(
            client("10.0.0.1", &["[2001:db8::7]:443"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("::ffff:10.0.0.1", &["203.0.113.7"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn json_content_types() {
        let ok = |s: &'static str| is_json(Some(&HeaderValue::from_static(s)));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!is_json(None));
    }

    #[test]
    fn data_errors_are_cut_short() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: u32,
        }
        let huge = format!("{{\"n\":\"{}\"}}", "x".repeat(10_000));
        let e = serde_json::from_str::<T>(&huge).unwrap_err();
        let m = json_error_message(&e);
        assert!(m.len() < 300, "{m}");
        assert!(m.starts_with("invalid request: invalid type"), "{m}");
    }
}
