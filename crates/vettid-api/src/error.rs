//! The API's one error type: each variant says whose fault it is, and maps to a status code
//! and a stable `code` string answered as `{"error":{"code","message"}}`.
//!
//! Messages are written for the client and never carry internals: a server fault is logged
//! where it happens ([`ApiError::internal`]) and answered as a bare `internal`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to an HTTP client as `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The client sent something malformed or invalid: bad JSON, wrong content type, an unknown
    /// or missing field, a value out of range (400 `bad_request`). The message says which.
    #[error("{0}")]
    BadRequest(String),
    /// Credentials are missing, unknown, expired or revoked (401 `unauthorized`).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The caller is known but may not do this (403 `forbidden`).
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such route or resource, or one that belongs to someone else (404 `not_found`).
    #[error("{0}")]
    NotFound(&'static str),
    /// The route exists but not for this method (405 `method_not_allowed`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request contradicts the current state: a duplicate, a wrong state (409 `conflict`).
    #[error("{0}")]
    Conflict(&'static str),
    /// A one-time code, link, invite or token has expired or was already used (410 `gone`).
    #[error("{0}")]
    Gone(&'static str),
    /// The request body is larger than this deployment accepts (413 `payload_too_large`).
    #[error("request body too large")]
    PayloadTooLarge,
    /// Too many requests from this client; retry after the given number of seconds
    /// (429 `rate_limited`, with a `Retry-After` header).
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
    },
    /// A server fault (500 `internal`). Its cause was logged; the client learns nothing more.
    #[error("internal error")]
    Internal,
    /// A service we depend on (the NATS server) refused or did not answer (502 `bad_gateway`).
    #[error("{0}")]
    BadGateway(&'static str),
    /// This deployment is not configured for the feature, or cannot serve it now (a
    /// dependency could not finish, a bounded store is full) (503 `service_unavailable`): our
    /// side, not the client's request.
    #[error("{0}")]
    ServiceUnavailable(&'static str),
}

impl ApiError {
    /// A `BadRequest` with `message`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }

    /// Logs `cause` (which must not contain secrets) with `context`, and returns
    /// [`ApiError::Internal`], so the client sees no internals.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "{context}");
        ApiError::Internal
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable `code` of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Gone(_) => "gone",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal => "internal",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::ServiceUnavailable(_) => "service_unavailable",
        }
    }
}

/// Database failures are server faults; callers that expect a constraint violation (a
/// duplicate) check for it before converting.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> ApiError {
        ApiError::internal("database", err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_own_status_and_code() {
        let all = [
            ApiError::bad_request("x"),
            ApiError::Unauthorized("x"),
            ApiError::Forbidden("x"),
            ApiError::NotFound("x"),
            ApiError::MethodNotAllowed,
            ApiError::Conflict("x"),
            ApiError::Gone("x"),
            ApiError::PayloadTooLarge,
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Internal,
            ApiError::BadGateway("x"),
            ApiError::ServiceUnavailable("x"),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(ApiError::code).collect();
        let statuses: std::collections::HashSet<_> = all.iter().map(ApiError::status).collect();
        assert_eq!(codes.len(), all.len());
        assert_eq!(statuses.len(), all.len());
    }

    #[test]
    fn internal_errors_say_nothing_of_their_cause() {
        let e = ApiError::internal("test", "secret path /var/lib/x");
        assert_eq!(e.to_string(), "internal error");
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let res = ApiError::RateLimited {
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "42");
    }
}
