//! The enclave's word for a finalized enrollment: an attestation document, from an enclave
//! running a release of the signed PCR manifest, whose `user_data` binds the member, the
//! confirmed session and device keys, and the new vault's identity key
//! ([`vettid_proto::auth::enrolled_device_binding`]). Only the enclave's enrollment path asks
//! its device for such a document, after checking the device key's proof for the session, so
//! the API registers exactly the keys the vault registered, and learns the vault's identity
//! key from the enclave rather than from the app.

use crate::ApiError;
use crate::app::App;
use base64::Engine;
use vettid_attest::manifest::Manifest;
use vettid_attest::{Policy, TrustedRoot};

/// The largest document accepted (a Nitro document with its chain is about 4.5 KiB).
const MAX_DOCUMENT: usize = 8 * 1024;

/// What an enclave document is checked against, read from the configured files at each use
/// (a new manifest counts without a restart).
struct EnclaveTrust {
    root: TrustedRoot,
    manifest: Manifest,
}

async fn enclave_trust(app: &App) -> Result<EnclaveTrust, ApiError> {
    let config = &app.state.config;
    let unavailable = ApiError::ServiceUnavailable(
        "this deployment cannot check enclave attestation (no root or manifest key configured)",
    );
    let (Some(root_path), Some(manifest_path), Some(key)) = (
        config.attestation_root_path.as_deref(),
        config.manifest_path.as_deref(),
        config.manifest_key.as_deref(),
    ) else {
        return Err(unavailable);
    };
    let read = |path: &std::path::Path| {
        let path = path.to_owned();
        async move {
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| ApiError::internal("reading the attestation trust files", e))
        }
    };
    let root = TrustedRoot::from_pem(&read(root_path).await?)
        .map_err(|e| ApiError::internal("the configured attestation root", e))?;
    let bytes = crate::validate::hex_bytes::<32>("manifest key", key.trim())
        .map_err(|e| ApiError::internal("the configured manifest key", e))?;
    let key = vettid_crypto::sign::VerifyingKey::from_bytes(&bytes)
        .map_err(|e| ApiError::internal("the configured manifest key", e))?;
    let manifest = Manifest::verify(&read(manifest_path).await?, &key, 0)
        .map_err(|e| ApiError::internal("the published PCR manifest", e))?;
    Ok(EnclaveTrust { root, manifest })
}

/// Checks that `document` (base64) binds `expected` (the grant's member, confirmed keys and
/// identity key, under the label of an enrollment or a recovery). 400 for a document that is
/// malformed, from another root or release, more than an enrollment token's lifetime (10 min)
/// old, carrying a nonce or key (as documents for apps do), or binding anything else; 503 if
/// this deployment has no attestation trust configured.
pub(crate) async fn check(app: &App, expected: &[u8; 32], document: &str) -> Result<(), ApiError> {
    let refused = |why: &str| {
        ApiError::bad_request(format!(
            "device_attestation is not an enclave's word for this enrollment: {why}"
        ))
    };
    if document.len() > MAX_DOCUMENT * 4 / 3 + 4 {
        return Err(refused("too large"));
    }
    let doc = base64::engine::general_purpose::STANDARD
        .decode(document)
        .map_err(|_| refused("not base64"))?;
    let trust = enclave_trust(app).await?;
    let now = app.now().unsigned_abs();
    let policy = Policy {
        max_age_secs: Some(super::TOKEN_SECS.unsigned_abs()),
        ..Policy::new(&trust.root, now)
    };
    let verified = vettid_attest::verify(&doc, &policy).map_err(|e| refused(&e.to_string()))?;
    trust
        .manifest
        .trusts(&verified.pcrs, now)
        .map_err(|_| refused("its PCRs are not a release of the signed manifest"))?;
    if verified.nonce.is_some() || verified.public_key.is_some() {
        return Err(refused("it is a document for an app's session"));
    }
    let bound = verified.user_data.as_deref().unwrap_or_default();
    if !vettid_crypto::ct_eq(bound, expected) {
        return Err(refused(
            "it does not bind this member, the confirmed device's keys and this identity key",
        ));
    }
    Ok(())
}
