//! Public documents: the signed PCR manifest apps pin enclave measurements with, and (in
//! development) the dev attestation root. Served byte for byte from the configured files,
//! read at each request so a new manifest is served without a restart.

use crate::ApiError;
use crate::app::App;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::path::Path;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v1/pcr-manifest", get(pcr_manifest))
        .route("/v1/dev-root", get(dev_root))
}

/// `GET /v1/pcr-manifest` → the manifest file as `application/json`; 404 if none.
async fn pcr_manifest(State(app): State<App>) -> Result<Response, ApiError> {
    let path = app.state.config.manifest_path.as_deref();
    serve_file(path, "application/json", "no PCR manifest is published").await
}

/// `GET /v1/dev-root` → the dev root certificate as `application/x-pem-file`; 404 if none.
async fn dev_root(State(app): State<App>) -> Result<Response, ApiError> {
    let path = app.state.config.dev_root_path.as_deref();
    serve_file(path, "application/x-pem-file", "no dev root is published").await
}

async fn serve_file(
    path: Option<&Path>,
    content_type: &'static str,
    missing: &'static str,
) -> Result<Response, ApiError> {
    let path = path.ok_or(ApiError::NotFound(missing))?;
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let mut response = bytes.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            Ok(response)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(missing)),
        Err(e) => Err(ApiError::internal("reading a published file", e)),
    }
}
