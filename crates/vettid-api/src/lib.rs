//! # vettid-api: the HTTP API (untrusted, stateless)
//!
//! Carries registration, membership, administration and the enrollment and recovery
//! ceremonies. It never sees vault content, PINs or session keys: those travel end to end
//! between the member's app and the enclave. See `docs/ARCHITECTURE.md`.
//!
//! So far it serves `GET /health`. Errors use one JSON shape,
//! `{"error":{"code","message"}}`, with the status code that says whose fault it is.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

mod error;
mod health;

pub use error::ApiError;

use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

/// The API's routes.
pub fn router() -> Router {
    Router::new()
        .merge(health::routes())
        .fallback(|| async { ApiError::NotFound })
}

/// Serves the API on `listener` until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}
