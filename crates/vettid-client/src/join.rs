//! A second device joining the vault with the approval of one the vault knows (the API side:
//! `vettid-api/src/devices.rs`).
//!
//! 1. The new device makes its keys and shows a [`JoinRequest`] (its device and session keys,
//!    its name): [`request`].
//! 2. The member's device, in an unlocked session and with the PIN, has the enclave add those
//!    keys and passes the enclave's document to the API, signed with its own device key; it
//!    shows the [`JoinInvite`] the API answered (a one-time token, 15 minutes, and the vault's
//!    identity key): [`approve`].
//! 3. The new device takes member credentials with the token, signing with its device key,
//!    attests the enclave, opens a session with its own keys and unlocks with the PIN:
//!    [`finish`].
//!
//! Nothing secret passes between the two devices except the token, which is useless without
//! the new device's key; the request and the invite travel by QR or copy and paste.

use crate::ClientError;
use crate::api::Api;
use crate::profile::Profile;
use crate::vault::{Seen, Unlocked};
use serde::{Deserialize, Serialize};
use serde_json::json;
use vettid_proto::devices::{Device, DeviceOp, DeviceReply};
use zeroize::Zeroizing;

/// What a new device shows the member's device: its keys and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    /// Its Ed25519 device key (hex).
    pub device_public_key: String,
    /// Its X25519 session key (hex).
    pub session_public_key: String,
    /// Its name.
    pub device_name: String,
}

/// What the member's device shows the new one: where to finish, and with what.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinInvite {
    #[serde(rename = "type")]
    kind: String,
    version: u32,
    /// The API to finish at.
    pub api_url: String,
    /// The member.
    pub member_id: String,
    /// The vault's identity key (hex), as the member's device knows it.
    pub identity_public_key: String,
    /// The one-time join token.
    join_token: String,
    /// When the token stops working (Unix seconds).
    pub expires_at: i64,
}

// The token is a bearer secret: never printed.
impl std::fmt::Debug for JoinInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinInvite")
            .field("api_url", &self.api_url)
            .field("member_id", &self.member_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, ClientError> {
    serde_json::from_str(text.trim())
        .map_err(|e| ClientError::Protocol(format!("not a VettID {what}: {e}")))
}

impl JoinRequest {
    /// Parses a shown join request.
    pub fn parse(text: &str) -> Result<JoinRequest, ClientError> {
        let r: JoinRequest = parse(text, "join request")?;
        if r.kind != "vettid_join_request" || r.version != 1 {
            return Err(ClientError::Protocol("not a VettID join request".into()));
        }
        r.keys()?;
        if !vettid_proto::devices::valid_name(&r.device_name) {
            return Err(ClientError::Protocol(
                "the join request's device name is not acceptable".into(),
            ));
        }
        Ok(r)
    }

    /// What both devices show, for the member to compare before approving: the first bytes
    /// of the new device's two keys.
    pub fn fingerprint(&self) -> String {
        let short = |k: &str| {
            k.get(..8)
                .unwrap_or_default()
                .as_bytes()
                .chunks(4)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        };
        format!(
            "{} {}",
            short(&self.device_public_key),
            short(&self.session_public_key)
        )
    }

    /// As text to show (JSON).
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("serialises")
    }

    fn keys(&self) -> Result<([u8; 32], [u8; 32]), ClientError> {
        let key = |hex_text: &str| {
            let mut k = [0u8; 32];
            hex::decode_to_slice(hex_text, &mut k)
                .map_err(|_| ClientError::Protocol("a key in the join request is not hex".into()))
                .map(|()| k)
        };
        Ok((
            key(&self.device_public_key)?,
            key(&self.session_public_key)?,
        ))
    }
}

impl JoinInvite {
    /// Parses a shown join invite.
    pub fn parse(text: &str) -> Result<JoinInvite, ClientError> {
        let i: JoinInvite = parse(text, "join invite")?;
        if i.kind != "vettid_join" || i.version != 1 {
            return Err(ClientError::Protocol("not a VettID join invite".into()));
        }
        Ok(i)
    }

    /// As text to show (JSON; it holds the token: show it to the new device only).
    pub fn text(&self) -> Zeroizing<String> {
        Zeroizing::new(serde_json::to_string(self).expect("serialises"))
    }
}

/// Step 1, on the new device: its keys (made now in `profile`, which must not be enrolled)
/// as a request to show, and the API it will finish at.
pub fn request(
    profile: &mut Profile,
    api_url: &str,
    device_name: &str,
) -> Result<JoinRequest, ClientError> {
    if profile.state.enrolled {
        return Err(ClientError::Profile(format!(
            "{} is already enrolled (use another --profile)",
            profile.dir().display()
        )));
    }
    if !vettid_proto::devices::valid_name(device_name) {
        return Err(ClientError::Profile(
            "a device name is 1-64 characters without control characters".into(),
        ));
    }
    let device_key = profile.device_key()?.verifying_key().to_bytes();
    let session_key = vettid_crypto::noise::public_key(&profile.noise_key()?);
    profile.state.api_url = Some(api_url.to_owned());
    profile.state.device_name = Some(device_name.to_owned());
    profile.save()?;
    Ok(JoinRequest {
        kind: "vettid_join_request".into(),
        version: 1,
        device_public_key: hex::encode(device_key),
        session_public_key: hex::encode(session_key),
        device_name: device_name.to_owned(),
    })
}

impl<S: Seen> Unlocked<S> {
    /// Has the enclave register the device of `request` (the PIN again); the device as
    /// registered and the enclave's document for the API.
    pub async fn add_device(
        &mut self,
        pin: Zeroizing<Vec<u8>>,
        request: &JoinRequest,
    ) -> Result<(Device, Vec<u8>), ClientError> {
        let (device_key, session_key) = request.keys()?;
        match self
            .run(DeviceOp::Add {
                pin,
                session_key,
                device_key,
                name: request.device_name.clone(),
            })
            .await?
        {
            DeviceReply::Added {
                device,
                device_attestation,
            } => Ok((device, device_attestation)),
            _ => Err(ClientError::Protocol("expected Added".into())),
        }
    }

    /// Has the enclave remove the device of session key `device` (the PIN again); the device
    /// as it was and the enclave's document for the API.
    pub async fn remove_device(
        &mut self,
        pin: Zeroizing<Vec<u8>>,
        device: [u8; 32],
    ) -> Result<(Device, Vec<u8>), ClientError> {
        match self.run(DeviceOp::Remove { pin, device }).await? {
            DeviceReply::Removed {
                device,
                device_attestation,
            } => Ok((device, device_attestation)),
            _ => Err(ClientError::Protocol("expected Removed".into())),
        }
    }
}

/// Step 2, on the member's device (`profile`, enrolled), after
/// [`Unlocked::add_device`]: asks the API, signed with this device's key, for the new
/// device's invite.
pub async fn approve(
    profile: &Profile,
    request: &JoinRequest,
    device_attestation: &[u8],
) -> Result<JoinInvite, ClientError> {
    use base64::Engine;
    let api_url = profile
        .state
        .api_url
        .clone()
        .ok_or_else(|| ClientError::Profile("no API URL".into()))?;
    let member = profile.member()?.to_owned();
    let identity = profile
        .state
        .identity_public_key
        .clone()
        .ok_or_else(|| ClientError::Profile("no vault identity key".into()))?;
    let signer = profile.device_key()?;
    let (device_key, session_key) = request.keys()?;
    let timestamp = crate::now_ms();
    let message =
        vettid_proto::auth::device_join_message(&member, timestamp, &device_key, &session_key);
    let body = json!({
        "member_id": member,
        "device_public_key": hex::encode(signer.verifying_key().to_bytes()),
        "timestamp": timestamp,
        "signature": hex::encode(signer.sign(&message).to_bytes()),
        "new_device_public_key": request.device_public_key,
        "new_session_public_key": request.session_public_key,
        "device_name": request.device_name,
        "device_attestation": base64::engine::general_purpose::STANDARD.encode(device_attestation),
    });
    let v = crate::http::json(&api_url, "POST", "/v1/devices/join", None, Some(&body)).await?;
    let token = v["join_token"]
        .as_str()
        .ok_or_else(|| ClientError::Protocol("no join_token".into()))?;
    Ok(JoinInvite {
        kind: "vettid_join".into(),
        version: 1,
        api_url,
        member_id: member,
        identity_public_key: identity,
        join_token: token.to_owned(),
        expires_at: v["expires_at"].as_i64().unwrap_or_default(),
    })
}

/// After [`Unlocked::remove_device`], on the member's device: has the API revoke the removed
/// device and its NATS credentials (signed with this device's key). The NATS keys revoked.
pub async fn report_removal(
    profile: &Profile,
    removed: &Device,
    device_attestation: &[u8],
) -> Result<u64, ClientError> {
    use base64::Engine;
    let api = crate::app::api_of(profile)?;
    let member = profile.member()?.to_owned();
    let signer = profile.device_key()?;
    let removed_key = removed
        .device_key
        .ok_or_else(|| ClientError::Protocol("the vault gave no device key".into()))?;
    let timestamp = crate::now_ms();
    let message = vettid_proto::auth::device_remove_message(&member, timestamp, &removed_key);
    let body = json!({
        "member_id": member,
        "device_public_key": hex::encode(signer.verifying_key().to_bytes()),
        "timestamp": timestamp,
        "signature": hex::encode(signer.sign(&message).to_bytes()),
        "removed_device_public_key": hex::encode(removed_key),
        "device_attestation": base64::engine::general_purpose::STANDARD.encode(device_attestation),
    });
    let v = crate::http::json(api.base(), "POST", "/v1/devices/remove", None, Some(&body)).await?;
    Ok(v["nats_keys_revoked"].as_u64().unwrap_or_default())
}

/// Step 3, on the new device (the `profile` of [`request`], its trust pinned): takes member
/// credentials with the invite's token, then connects, attests the enclave, opens a session
/// with this device's keys and unlocks with `pin` (which also shows that the enclave admits
/// this device). The vault version it unlocked at.
pub async fn finish(
    profile: &mut Profile,
    invite: &JoinInvite,
    pin: Zeroizing<Vec<u8>>,
    nats_url: Option<String>,
) -> Result<u64, ClientError> {
    let api = Api::new(&invite.api_url);
    let device = profile.device_key()?;
    let nats_key = profile.nats_key()?.public_key();
    let message = vettid_proto::auth::device_joined_message(&invite.member_id, &nats_key);
    let body = json!({
        "device_public_key": hex::encode(device.verifying_key().to_bytes()),
        "nats_public_key": nats_key,
        "signature": hex::encode(device.sign(&message).to_bytes()),
    });
    let v = crate::http::json(
        api.base(),
        "POST",
        "/v1/devices/join/finalize",
        Some(&invite.join_token),
        Some(&body),
    )
    .await?;
    let jwt = v["jwt"]
        .as_str()
        .ok_or_else(|| ClientError::Protocol("no jwt in the answer".into()))?;
    profile.store_jwt(jwt)?;
    profile.state.member_id = Some(invite.member_id.clone());
    profile.state.api_url = Some(invite.api_url.clone());
    profile.state.identity_public_key = Some(invite.identity_public_key.clone());
    profile.state.nats_url = nats_url.or_else(|| v["nats_url"].as_str().map(str::to_owned));
    profile.save()?;
    let c = crate::app::connect(profile).await?;
    let s = c.session.unlock(pin, &mut *profile).await?;
    let (version, event_key) = (s.version(), s.event_key().clone());
    drop(s);
    profile.store_event_key(&event_key)?;
    profile.state.enrolled = true;
    profile.save()?;
    Ok(version)
}
