//! The app's journeys on top of the pieces: enrollment, and opening a session to an enrolled
//! vault. Each step that could fail says so before anything secret has left the app.

use crate::api::{Api, EnrollmentSecret, PHASES};
use crate::profile::Profile;
use crate::vault::{self, Session, Trust, VaultClient, VerifiedEnclave, check_version};
use crate::{ClientError, password_verifier};
use vettid_proto::session::{AppOp, AppReply, Channel};
use zeroize::Zeroizing;

/// What the member types in.
pub struct EnrollInput {
    /// The code or QR session token.
    pub secret: EnrollmentSecret,
    /// The PIN (4–64 bytes).
    pub pin: Zeroizing<Vec<u8>>,
    /// The password (never leaves the app; only its Argon2id verifier does).
    pub password: Zeroizing<Vec<u8>>,
    /// A name for this device.
    pub device_name: String,
    /// NATS URL to use instead of the one the API reports.
    pub nats_url: Option<String>,
}

/// Enrolls this profile. `phase` is called as each phase passes (`api::PHASES`).
pub async fn enroll(
    profile: &mut Profile,
    api: &Api,
    input: EnrollInput,
    mut phase: impl FnMut(&str, &str),
) -> Result<(), ClientError> {
    if profile.state.enrolled {
        return Err(ClientError::Profile(format!(
            "{} is already enrolled (use another --profile)",
            profile.dir().display()
        )));
    }
    let trust = profile.trust()?;
    let enrollment = api.authenticate(&input.secret, &input.device_name).await?;
    let member = enrollment.member_id.clone();
    profile.state.member_id = Some(member.clone());
    profile.state.api_url = Some(api.base().to_owned());
    profile.state.device_name = Some(input.device_name.clone());
    profile.save()?;
    phase(PHASES[0], &format!("member {member}"));

    let nats_key = profile.nats_key()?;
    let issued = api
        .enrollment_creds(&enrollment, &nats_key.public_key())
        .await?;
    profile.store_jwt(&issued.jwt)?;
    let url = input
        .nats_url
        .clone()
        .or(issued.nats_url.clone())
        .ok_or_else(|| ClientError::Protocol("the API gave no NATS URL; pass one".into()))?;
    profile.state.nats_url = Some(url.clone());
    profile.save()?;
    let client = vault::connect(&url, &profile.creds()?, &member).await?;
    api.report(&enrollment, PHASES[1]).await?;
    phase(PHASES[1], &url);

    let manifest = trust.manifest(&api.pcr_manifest().await?, profile.state.manifest_serial)?;
    let enclave = client.attest(&trust, &manifest).await?;
    profile.state.manifest_serial = manifest.serial;
    profile.save()?;
    api.report(&enrollment, PHASES[2]).await?;
    phase(
        PHASES[2],
        &format!(
            "release {} (manifest serial {})",
            enclave.release, manifest.serial
        ),
    );

    let mut session = client
        .open_session(Channel::Enroll, &profile.noise_key()?, &enclave)
        .await?;
    let verifier = password_verifier(&member, &input.password);
    let reply = session
        .call(AppOp::Enroll {
            pin: input.pin.clone(),
            password_verifier: zeroize::Zeroizing::new(verifier),
            device_name: input.device_name.clone(),
        })
        .await?;
    let AppReply::Enrolled(enrolled) = reply else {
        return Err(ClientError::Protocol("expected Enrolled".into()));
    };
    let highest = check_version(
        &member,
        &enrolled.identity_public_key,
        &enrolled.version,
        profile.state.highest_version,
        None,
    )?;
    profile.state.highest_change_hash = Some(hex::encode(&enrolled.version.change_hash));
    profile.state.highest_signature = Some(hex::encode(&enrolled.version.signature));
    profile.write_secret("credential.blob", &enrolled.credential)?;
    profile.store_event_key(&enrolled.event_key)?;
    profile.state.highest_version = highest;
    profile.state.identity_public_key = Some(hex::encode(enrolled.identity_public_key));
    profile.state.exchange_public_key = Some(hex::encode(enrolled.exchange_public_key));
    profile.save()?;
    api.report(&enrollment, PHASES[3]).await?;
    phase(
        PHASES[3],
        "vault created in the enclave; PIN guesses are counted there",
    );
    api.report(&enrollment, PHASES[4]).await?;
    phase(
        PHASES[4],
        "credential sealed by the vault and stored in this profile",
    );

    let issued = api
        .finalize(&enrollment, &profile.device_key()?, &nats_key.public_key())
        .await?;
    profile.store_jwt(&issued.jwt)?;
    profile.state.enrolled = true;
    profile.save()?;
    phase(PHASES[5], "member credentials stored in nats.creds");
    Ok(())
}

/// An enrolled app connected to its vault through a verified, open session.
pub struct Connected {
    /// The NATS connection.
    pub client: VaultClient,
    /// The verified enclave.
    pub enclave: VerifiedEnclave,
    /// The session.
    pub session: Session,
}

/// Connects an enrolled profile: NATS with its creds, the manifest from the API, attestation,
/// then the session handshake with its device key.
pub async fn connect(profile: &mut Profile) -> Result<Connected, ClientError> {
    let trust: Trust = profile.trust()?;
    let member = profile.member()?.to_owned();
    let api = Api::new(
        profile
            .state
            .api_url
            .as_deref()
            .ok_or_else(|| ClientError::Profile("no API URL".into()))?,
    );
    let url = profile
        .state
        .nats_url
        .clone()
        .ok_or_else(|| ClientError::Profile("no NATS URL".into()))?;
    let client = vault::connect(&url, &profile.creds()?, &member).await?;
    let manifest = trust.manifest(&api.pcr_manifest().await?, profile.state.manifest_serial)?;
    let enclave = client.attest(&trust, &manifest).await?;
    if manifest.serial > profile.state.manifest_serial {
        profile.state.manifest_serial = manifest.serial;
        profile.save()?;
    }
    let mut session = client
        .open_session(Channel::Session, &profile.noise_key()?, &enclave)
        .await?;
    // Show the enclave the newest state this app has seen: it then refuses to serve this
    // session anything older or on another branch (after a restart it cannot know otherwise).
    if let Some(seen) = profile.state.highest_signed() {
        session.anchor(seen).await?;
    }
    Ok(Connected {
        client,
        enclave,
        session,
    })
}

/// Records a signed version the vault showed, refusing rollback.
pub fn observe(
    profile: &mut Profile,
    version: &vettid_proto::enclave::SignedVersion,
) -> Result<(), ClientError> {
    let member = profile.member()?.to_owned();
    let identity = profile
        .state
        .identity_public_key
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ClientError::Profile("no identity key".into()))?;
    let seen_hash = profile
        .state
        .highest_change_hash
        .as_deref()
        .and_then(|h| hex::decode(h).ok());
    let highest = check_version(
        &member,
        &identity,
        version,
        profile.state.highest_version,
        seen_hash.as_deref(),
    )?;
    if highest != profile.state.highest_version
        || seen_hash.is_none()
        || profile.state.highest_signature.is_none()
    {
        profile.state.highest_version = highest;
        profile.state.highest_change_hash = Some(hex::encode(&version.change_hash));
        profile.state.highest_signature = Some(hex::encode(&version.signature));
        profile.save()?;
    }
    Ok(())
}
