//! The API calls an app makes: the enrollment ceremony and credential renewal.

use crate::ClientError;
use crate::http;
use serde_json::{Value, json};
use vettid_crypto::sign::SigningKey;

/// The enrollment phases the app reports, in order (the web portal shows them).
pub const PHASES: [&str; 7] = [
    "authenticated",
    "confirmed",
    "nats_connected",
    "attestation_verified",
    "pin_set",
    "password_set",
    "completed",
];

/// What an enrollment QR code carries.
#[derive(Clone, serde::Deserialize)]
pub struct QrPayload {
    /// Always `vettid_enrollment`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Format version (1).
    pub version: u32,
    /// The API to talk to.
    pub api_url: String,
    /// The single-use session token.
    pub session_token: String,
    /// The member enrolling.
    pub member_id: String,
}

impl QrPayload {
    /// Parses and checks a scanned enrollment payload (a recovery's is refused: it belongs to
    /// `vettid app recover`).
    pub fn parse(text: &str) -> Result<QrPayload, ClientError> {
        Self::parse_kind(text, "vettid_enrollment")
    }

    /// Parses and checks a scanned recovery payload (from the web page, after the delay).
    pub fn parse_recovery(text: &str) -> Result<QrPayload, ClientError> {
        Self::parse_kind(text, "vettid_recovery")
    }

    fn parse_kind(text: &str, kind: &str) -> Result<QrPayload, ClientError> {
        let qr: QrPayload = serde_json::from_str(text)
            .map_err(|e| ClientError::Protocol(format!("not a VettID QR payload: {e}")))?;
        if qr.kind != kind || qr.version != 1 {
            return Err(ClientError::Protocol(format!(
                "not a VettID {} QR code (it is a {:?} of version {})",
                kind.trim_start_matches("vettid_"),
                qr.kind,
                qr.version
            )));
        }
        Ok(qr)
    }
}

/// A recovery of the member's vault under way, as an enrolled device is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryNotice {
    /// `waiting`, `ready`, or (just cancelled) `cancelled`.
    pub stage: String,
    /// When it was requested (Unix seconds).
    pub requested_at: i64,
    /// When the delay ends.
    pub ready_at: i64,
    /// Why it ended, if it did.
    pub cancel_reason: Option<String>,
}

/// How the app proves it may enroll.
#[derive(Clone)]
pub enum EnrollmentSecret {
    /// The short code `XXXX-XXXX` shown on the web, with the email of the member it was
    /// made for.
    Code {
        /// The code as typed.
        code: String,
        /// The member's email.
        email: String,
    },
    /// The session token from the QR code, with the member id beside it.
    SessionToken {
        /// The QR's single-use token.
        token: String,
        /// The member id the QR carries.
        member_id: String,
    },
}

impl From<QrPayload> for EnrollmentSecret {
    fn from(qr: QrPayload) -> EnrollmentSecret {
        EnrollmentSecret::SessionToken {
            token: qr.session_token,
            member_id: qr.member_id,
        }
    }
}

/// NATS credentials the API issued.
#[derive(Clone)]
pub struct IssuedCreds {
    /// The user JWT.
    pub jwt: String,
    /// Where to connect (as the API knows it).
    pub nats_url: Option<String>,
    /// Expiry as the API reported it.
    pub expires_at: Value,
}

// Codes, tokens and JWTs are bearer secrets: never printed.
impl std::fmt::Debug for QrPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrPayload")
            .field("api_url", &self.api_url)
            .field("member_id", &self.member_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for EnrollmentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnrollmentSecret::Code { .. } => "Code(..)",
            EnrollmentSecret::SessionToken { .. } => "SessionToken(..)",
        })
    }
}

impl std::fmt::Debug for IssuedCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCreds")
            .field("nats_url", &self.nats_url)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("member_id", &self.member_id)
            .finish_non_exhaustive()
    }
}

fn creds_from(v: &Value) -> Result<IssuedCreds, ClientError> {
    Ok(IssuedCreds {
        jwt: v["jwt"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no jwt in the answer".into()))?
            .to_owned(),
        nats_url: v["nats_url"].as_str().map(str::to_owned),
        expires_at: v["expires_at"].clone(),
    })
}

/// The API at a base URL (`http://host:port`).
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
}

/// A running enrollment: the short-lived token the API gave for it.
#[derive(Clone)]
pub struct Enrollment {
    /// Bearer token for the enrollment calls (10 minutes).
    pub token: String,
    /// The member enrolling.
    pub member_id: String,
    /// The enrollment session (the comparison code is derived from it).
    pub session_id: String,
    /// The salt the API chose for the comparison code.
    pub comparison_salt: [u8; 16],
}

/// Whether the member has confirmed the device yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Not yet; the token lasts until `expires_at` (Unix seconds).
    Waiting {
        /// When the enrollment token expires.
        expires_at: i64,
    },
    /// The member typed the comparison code.
    Confirmed,
}

impl Api {
    /// The API at `base`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Exchanges a code or QR session token for an enrollment token, naming the device key
    /// and session key the member will confirm (through the comparison code derived from
    /// them) and the vault will register.
    pub async fn authenticate(
        &self,
        secret: &EnrollmentSecret,
        device_name: &str,
        device_key: &[u8; 32],
        session_key: &[u8; 32],
    ) -> Result<Enrollment, ClientError> {
        let mut body = match secret {
            EnrollmentSecret::Code { code, email } => json!({ "code": code, "email": email }),
            EnrollmentSecret::SessionToken { token, member_id } => {
                json!({ "session_token": token, "member_id": member_id })
            }
        };
        body["device_name"] = json!(device_name);
        body["device_public_key"] = json!(hex::encode(device_key));
        body["session_public_key"] = json!(hex::encode(session_key));
        let v = http::json(
            &self.base,
            "POST",
            "/v1/enroll/authenticate",
            None,
            Some(&body),
        )
        .await?;
        let field = |name: &str| {
            v[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| ClientError::Protocol(format!("no {name} in the answer")))
        };
        let mut comparison_salt = [0u8; 16];
        hex::decode_to_slice(field("comparison_salt")?, &mut comparison_salt)
            .map_err(|_| ClientError::Protocol("comparison_salt is not 16 bytes of hex".into()))?;
        Ok(Enrollment {
            token: field("enrollment_token")?,
            member_id: field("member_id")?,
            session_id: field("enrollment_session_id")?,
            comparison_salt,
        })
    }

    /// Whether the member has confirmed this device on the web page yet. An error once the
    /// member cancelled (410) or the token expired (401).
    pub async fn confirmation(&self, e: &Enrollment) -> Result<Confirmation, ClientError> {
        let v = http::json(
            &self.base,
            "GET",
            "/v1/enroll/confirmation",
            Some(&e.token),
            None,
        )
        .await?;
        match v["confirmed"].as_bool() {
            Some(true) => Ok(Confirmation::Confirmed),
            Some(false) => Ok(Confirmation::Waiting {
                expires_at: v["expires_at"].as_i64().unwrap_or_default(),
            }),
            None => Err(ClientError::Protocol("no confirmed in the answer".into())),
        }
    }

    /// NATS credentials scoped to enrollment for the app's own NATS key.
    pub async fn enrollment_creds(
        &self,
        e: &Enrollment,
        nats_public_key: &str,
    ) -> Result<IssuedCreds, ClientError> {
        let body = json!({ "nats_public_key": nats_public_key });
        let v = http::json(
            &self.base,
            "POST",
            "/v1/enroll/nats",
            Some(&e.token),
            Some(&body),
        )
        .await?;
        creds_from(&v)
    }

    /// Reports an enrollment phase (the web portal shows it).
    pub async fn report(&self, e: &Enrollment, phase: &str) -> Result<(), ClientError> {
        let body = json!({ "phase": phase });
        http::json(
            &self.base,
            "POST",
            "/v1/enroll/status",
            Some(&e.token),
            Some(&body),
        )
        .await?;
        Ok(())
    }

    /// Completes enrollment: registers the device key with the enclave's attestation that
    /// the vault of `identity_public_key` registered it; member credentials for the NATS key.
    pub async fn finalize(
        &self,
        e: &Enrollment,
        device: &SigningKey,
        nats_public_key: &str,
        identity_public_key: &[u8; 32],
        device_attestation: &[u8],
    ) -> Result<IssuedCreds, ClientError> {
        self.finalize_at(
            "/v1/enroll/finalize",
            e,
            device,
            nats_public_key,
            identity_public_key,
            device_attestation,
        )
        .await
    }

    /// Completes a recovery: the API replaces the member's devices with this one on the
    /// enclave's attestation that it re-keyed the vault of `identity_public_key` to it.
    pub async fn finalize_recovery(
        &self,
        e: &Enrollment,
        device: &SigningKey,
        nats_public_key: &str,
        identity_public_key: &[u8; 32],
        device_attestation: &[u8],
    ) -> Result<IssuedCreds, ClientError> {
        self.finalize_at(
            "/v1/recovery/finalize",
            e,
            device,
            nats_public_key,
            identity_public_key,
            device_attestation,
        )
        .await
    }

    /// Tells the API the enclave refused this recovery because an enrolled device unlocked
    /// the vault during the delay: the request is cancelled.
    pub async fn recovery_used(&self, e: &Enrollment) -> Result<(), ClientError> {
        http::json(
            &self.base,
            "POST",
            "/v1/recovery/used",
            Some(&e.token),
            None,
        )
        .await?;
        Ok(())
    }

    /// What an enrolled device is told about a recovery of its vault (signed with its device
    /// key); with `cancel`, the recovery is cancelled. `None` when none is under way.
    pub async fn recovery_notice(
        &self,
        member: &str,
        device: &SigningKey,
        cancel: bool,
    ) -> Result<Option<RecoveryNotice>, ClientError> {
        self.device_notices(member, device, cancel)
            .await
            .map(|(recovery, _)| recovery)
    }

    /// What an enrolled device is told (signing with its device key): the recovery under way
    /// (cancelled first with `cancel`), and a deletion of the vault under way — which only the
    /// member, on the web, can cancel.
    pub async fn device_notices(
        &self,
        member: &str,
        device: &SigningKey,
        cancel: bool,
    ) -> Result<(Option<RecoveryNotice>, Option<RecoveryNotice>), ClientError> {
        let timestamp = crate::now_ms();
        let message = vettid_proto::auth::recovery_device_message(member, timestamp, cancel);
        let body = json!({
            "member_id": member,
            "device_public_key": hex::encode(device.verifying_key().to_bytes()),
            "timestamp": timestamp,
            "signature": hex::encode(device.sign(&message).to_bytes()),
            "cancel": cancel,
        });
        let v = http::json(&self.base, "POST", "/v1/recovery/device", None, Some(&body)).await?;
        let notice = |r: &Value| -> Result<Option<RecoveryNotice>, ClientError> {
            if r.is_null() {
                return Ok(None);
            }
            let number = |name: &str| {
                r[name]
                    .as_i64()
                    .ok_or_else(|| ClientError::Protocol(format!("no {name} in the notice")))
            };
            Ok(Some(RecoveryNotice {
                stage: r["stage"].as_str().unwrap_or_default().to_owned(),
                requested_at: number("requested_at")?,
                ready_at: number("ready_at")?,
                cancel_reason: r["cancel_reason"].as_str().map(str::to_owned),
            }))
        };
        Ok((notice(&v["recovery"])?, notice(&v["deletion"])?))
    }

    async fn finalize_at(
        &self,
        path: &str,
        e: &Enrollment,
        device: &SigningKey,
        nats_public_key: &str,
        identity_public_key: &[u8; 32],
        device_attestation: &[u8],
    ) -> Result<IssuedCreds, ClientError> {
        use base64::Engine;
        let body = json!({
            "device_public_key": hex::encode(device.verifying_key().to_bytes()),
            "nats_public_key": nats_public_key,
            "identity_public_key": hex::encode(identity_public_key),
            "device_attestation":
                base64::engine::general_purpose::STANDARD.encode(device_attestation),
        });
        let v = http::json(&self.base, "POST", path, Some(&e.token), Some(&body)).await?;
        creds_from(&v)
    }

    /// Renews member credentials, proving possession of the enrolled device key.
    pub async fn refresh(
        &self,
        member: &str,
        device: &SigningKey,
        nats_public_key: &str,
    ) -> Result<IssuedCreds, ClientError> {
        let timestamp = crate::now_ms() / 1000;
        let message = vettid_proto::auth::nats_refresh_message(member, nats_public_key, timestamp);
        let body = json!({
            "member_id": member,
            "device_public_key": hex::encode(device.verifying_key().to_bytes()),
            "nats_public_key": nats_public_key,
            "timestamp": timestamp,
            "signature": hex::encode(device.sign(&message).to_bytes()),
        });
        let v = http::json(&self.base, "POST", "/v1/nats/refresh", None, Some(&body)).await?;
        creds_from(&v)
    }

    /// The signed PCR manifest, as served.
    pub async fn pcr_manifest(&self) -> Result<String, ClientError> {
        http::text(&self.base, "/v1/pcr-manifest").await
    }
}
