//! The app's journeys on top of the pieces: enrollment, and opening a session to an enrolled
//! vault. Each step that could fail says so before anything secret has left the app.

use crate::api::{Api, Enrollment, EnrollmentSecret, PHASES};
use crate::profile::Profile;
use crate::vault::{self, Session, Trust, VaultClient, VerifiedEnclave, check_version};
use crate::{ClientError, password_verifier};
use vettid_proto::auth::DeviceBinding;
use vettid_proto::session::{AppOp, AppReply, Channel};
use zeroize::Zeroizing;

/// What the member types in once the device is confirmed.
pub struct EnrollInput {
    /// The PIN (4–64 bytes).
    pub pin: Zeroizing<Vec<u8>>,
    /// The password (never leaves the app; only its Argon2id verifier does).
    pub password: Zeroizing<Vec<u8>>,
    /// NATS URL to use instead of the one the API reports.
    pub nats_url: Option<String>,
}

/// An enrollment the app authenticated and the member has yet to confirm: show
/// [`Pending::comparison_code`] and wait in [`finish`].
pub struct Pending {
    enrollment: Enrollment,
    comparison_code: String,
}

impl Pending {
    /// The six digits the member types into the web page to confirm this device.
    pub fn comparison_code(&self) -> &str {
        &self.comparison_code
    }

    /// The member enrolling.
    pub fn member_id(&self) -> &str {
        &self.enrollment.member_id
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("member_id", &self.enrollment.member_id)
            .field("comparison_code", &self.comparison_code)
            .finish_non_exhaustive()
    }
}

/// Starts enrolling this profile: presents the code or QR token with the device's keys and
/// returns the comparison code to show. Nothing of the member's reaches this app until the
/// member types that code into the web page.
pub async fn begin(
    profile: &mut Profile,
    api: &Api,
    secret: &EnrollmentSecret,
    device_name: &str,
) -> Result<Pending, ClientError> {
    if profile.state.enrolled {
        return Err(ClientError::Profile(format!(
            "{} is already enrolled (use another --profile)",
            profile.dir().display()
        )));
    }
    let device_key = profile.device_key()?.verifying_key().to_bytes();
    let session_key = vettid_crypto::noise::public_key(&profile.noise_key()?);
    let enrollment = api
        .authenticate(secret, device_name, &device_key, &session_key)
        .await?;
    profile.state.member_id = Some(enrollment.member_id.clone());
    profile.state.api_url = Some(api.base().to_owned());
    profile.state.device_name = Some(device_name.to_owned());
    profile.save()?;
    let comparison_code = vettid_proto::auth::comparison_code(
        &enrollment.session_id,
        &enrollment.comparison_salt,
        &device_key,
        &session_key,
    );
    Ok(Pending {
        enrollment,
        comparison_code,
    })
}

/// Waits until the member confirms the device (polling, at most once a second), failing
/// when they cancel or the enrollment token expires.
async fn await_confirmation(api: &Api, e: &Enrollment) -> Result<(), ClientError> {
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        match api.confirmation(e).await? {
            crate::api::Confirmation::Confirmed => return Ok(()),
            crate::api::Confirmation::Waiting { .. } => {}
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(1));
    }
}

/// Finishes an enrollment begun with [`begin`]: waits for the member's confirmation, then
/// NATS, attestation, the vault's creation (PIN and password), and registration of the
/// device with the vault's receipt. `phase` is called as each phase passes (`api::PHASES`).
/// `show_phrase` gets the recovery phrase the vault made as soon as it arrives (before the
/// steps that could still fail): show it to the member once; nothing keeps it.
pub async fn finish(
    profile: &mut Profile,
    api: &Api,
    pending: Pending,
    input: EnrollInput,
    mut phase: impl FnMut(&str, &str),
    show_phrase: impl FnOnce(crate::recovery::RecoveryPhrase),
) -> Result<(), ClientError> {
    let enrollment = pending.enrollment;
    let member = enrollment.member_id.clone();
    let mut session = enrollment_session(
        profile,
        api,
        &enrollment,
        input.nats_url.clone(),
        &mut phase,
    )
    .await?;
    let session_key = vettid_crypto::noise::public_key(&profile.noise_key()?);
    let device = profile.device_key()?;
    let nats_key = profile.nats_key()?;
    let verifier = password_verifier(&member, &input.password);
    let device_name = profile.state.device_name.clone().unwrap_or_default();
    let reply = session
        .call(AppOp::Enroll {
            pin: input.pin.clone(),
            password_verifier: zeroize::Zeroizing::new(verifier),
            device_name,
            device: DeviceBinding::sign(&member, &session_key, &device),
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
    show_phrase(crate::recovery::RecoveryPhrase::from_entropy(
        &enrolled.recovery_phrase,
    ));
    remember_vault(
        profile,
        VaultKeys {
            identity: enrolled.identity_public_key,
            exchange: enrolled.exchange_public_key,
            version: &enrolled.version,
            highest,
            credential: &enrolled.credential,
            event_key: &enrolled.event_key,
        },
    )?;
    api.report(&enrollment, PHASES[4]).await?;
    phase(
        PHASES[4],
        "vault created in the enclave; PIN guesses are counted there",
    );
    api.report(&enrollment, PHASES[5]).await?;
    phase(
        PHASES[5],
        "credential sealed by the vault and stored in this profile",
    );

    let issued = api
        .finalize(
            &enrollment,
            &device,
            &nats_key.public_key(),
            &enrolled.identity_public_key,
            &enrolled.device_attestation,
        )
        .await?;
    profile.store_jwt(&issued.jwt)?;
    profile.state.enrolled = true;
    profile.save()?;
    phase(PHASES[6], "member credentials stored in nats.creds");
    Ok(())
}

/// The first steps of an enrollment or a recovery: the member's confirmation of this device,
/// enrollment-scoped NATS credentials, the enclave's attestation, and the session on the
/// enroll channel. Each phase is reported to the API (for the web page) and to `phase`.
async fn enrollment_session(
    profile: &mut Profile,
    api: &Api,
    enrollment: &Enrollment,
    nats_url: Option<String>,
    phase: &mut impl FnMut(&str, &str),
) -> Result<Session, ClientError> {
    let trust = profile.trust()?;
    let member = enrollment.member_id.clone();
    phase(PHASES[0], &format!("member {member}"));
    await_confirmation(api, enrollment).await?;
    phase(
        PHASES[1],
        "the member confirmed this device on the web page",
    );

    let nats_key = profile.nats_key()?;
    let issued = api
        .enrollment_creds(enrollment, &nats_key.public_key())
        .await?;
    profile.store_jwt(&issued.jwt)?;
    let url = nats_url
        .or(issued.nats_url.clone())
        .ok_or_else(|| ClientError::Protocol("the API gave no NATS URL; pass one".into()))?;
    profile.state.nats_url = Some(url.clone());
    profile.save()?;
    let client = vault::connect(&url, &profile.creds()?, &member).await?;
    api.report(enrollment, PHASES[2]).await?;
    phase(PHASES[2], &url);

    let manifest = trust.manifest(&api.pcr_manifest().await?, profile.state.manifest_serial)?;
    let enclave = client.attest(&trust, &manifest).await?;
    profile.state.manifest_serial = manifest.serial;
    profile.save()?;
    api.report(enrollment, PHASES[3]).await?;
    phase(
        PHASES[3],
        &format!(
            "release {} (manifest serial {})",
            enclave.release, manifest.serial
        ),
    );
    let noise_key = profile.noise_key()?;
    client
        .open_session(Channel::Enroll, &noise_key, &enclave)
        .await
}

/// What an enrollment or a recovery gave this device of its vault.
struct VaultKeys<'a> {
    identity: [u8; 32],
    exchange: [u8; 32],
    /// The signed version, already checked ([`check_version`]) to give `highest`.
    version: &'a vettid_proto::enclave::SignedVersion,
    highest: u64,
    credential: &'a [u8],
    event_key: &'a Zeroizing<[u8; 32]>,
}

/// Stores in the profile what the vault gave this device: its keys, the credential blob,
/// the event key, and the newest version seen.
fn remember_vault(profile: &mut Profile, keys: VaultKeys<'_>) -> Result<(), ClientError> {
    profile.state.highest_change_hash = Some(hex::encode(&keys.version.change_hash));
    profile.state.highest_signature = Some(hex::encode(&keys.version.signature));
    profile.write_secret("credential.blob", keys.credential)?;
    profile.store_event_key(keys.event_key)?;
    profile.state.highest_version = keys.highest;
    profile.state.identity_public_key = Some(hex::encode(keys.identity));
    profile.state.exchange_public_key = Some(hex::encode(keys.exchange));
    profile.save()
}

/// What the member proves to recover their vault on this new device.
pub enum Proof {
    /// The PIN (kept).
    Pin(Zeroizing<Vec<u8>>),
    /// The recovery phrase and a new PIN: also reopens a vault the guess limit locked.
    Phrase {
        /// The phrase shown at enrollment.
        phrase: crate::recovery::RecoveryPhrase,
        /// The PIN from now on.
        new_pin: Zeroizing<Vec<u8>>,
    },
}

/// What the member gives a recovery.
pub struct RecoverInput {
    /// The PIN or the recovery phrase.
    pub proof: Proof,
    /// The password of the new credential (only its Argon2id verifier leaves the app).
    pub password: Zeroizing<Vec<u8>>,
    /// NATS URL to use instead of the one the API reports.
    pub nats_url: Option<String>,
}

/// What a recovery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Devices the vault no longer knows.
    pub removed_devices: u32,
    /// The vault's version after it.
    pub version: u64,
}

/// Finishes a recovery begun with [`begin`] on a fresh profile with the recovery QR the web
/// page showed after the delay: the member's confirmation, NATS, attestation, then the proof
/// in the enclave, which re-keys the vault to this device (every other device removed) and
/// makes a new credential; then the API replaces the member's devices on the enclave's word.
/// When the enclave refuses because an enrolled device unlocked the vault during the delay
/// ([`vettid_proto::enclave::VaultError::RecentlyUsed`]), the API is told (the request ends)
/// and that error is returned.
pub async fn recover(
    profile: &mut Profile,
    api: &Api,
    pending: Pending,
    input: RecoverInput,
    mut phase: impl FnMut(&str, &str),
) -> Result<Recovered, ClientError> {
    let enrollment = pending.enrollment;
    let member = enrollment.member_id.clone();
    let mut session = enrollment_session(
        profile,
        api,
        &enrollment,
        input.nats_url.clone(),
        &mut phase,
    )
    .await?;
    let session_key = vettid_crypto::noise::public_key(&profile.noise_key()?);
    let device = profile.device_key()?;
    let proof = match input.proof {
        Proof::Pin(pin) => vettid_proto::session::RecoveryProof::Pin(pin),
        Proof::Phrase { phrase, new_pin } => vettid_proto::session::RecoveryProof::Phrase {
            phrase: phrase.entropy(),
            new_pin,
        },
    };
    let reply = session
        .call(AppOp::Recover {
            proof,
            password_verifier: Zeroizing::new(password_verifier(&member, &input.password)),
            device_name: profile.state.device_name.clone().unwrap_or_default(),
            device: DeviceBinding::sign(&member, &session_key, &device),
        })
        .await;
    let reply = match reply {
        Err(ClientError::Vault(vettid_proto::enclave::VaultError::RecentlyUsed)) => {
            api.recovery_used(&enrollment).await?;
            return Err(ClientError::Vault(
                vettid_proto::enclave::VaultError::RecentlyUsed,
            ));
        }
        other => other?,
    };
    let AppReply::Recovered(recovered) = reply else {
        return Err(ClientError::Protocol("expected Recovered".into()));
    };
    // A new device has seen nothing of this vault: the version it starts from is the one
    // the vault signs now.
    let highest = check_version(
        &member,
        &recovered.identity_public_key,
        &recovered.version,
        profile.state.highest_version,
        None,
    )?;
    remember_vault(
        profile,
        VaultKeys {
            identity: recovered.identity_public_key,
            exchange: recovered.exchange_public_key,
            version: &recovered.version,
            highest,
            credential: &recovered.credential,
            event_key: &recovered.event_key,
        },
    )?;
    // The vault is this device's now: progress reports for the web page must not stop the
    // finalize that gets its credentials.
    let _ = api.report(&enrollment, PHASES[4]).await;
    phase(
        PHASES[4],
        &format!(
            "the enclave re-keyed the vault to this device ({} other device(s) removed)",
            recovered.removed_devices
        ),
    );
    let _ = api.report(&enrollment, PHASES[5]).await;
    phase(PHASES[5], "a new credential sealed by the vault");
    let nats_key = profile.nats_key()?;
    let issued = api
        .finalize_recovery(
            &enrollment,
            &device,
            &nats_key.public_key(),
            &recovered.identity_public_key,
            &recovered.device_attestation,
        )
        .await?;
    profile.store_jwt(&issued.jwt)?;
    profile.state.enrolled = true;
    profile.save()?;
    phase(
        PHASES[6],
        "member credentials stored; the old devices' are revoked",
    );
    Ok(Recovered {
        removed_devices: recovered.removed_devices,
        version: recovered.version.version,
    })
}

/// What this enrolled device is told about a recovery of its vault under way (`None`: there
/// is none); with `cancel`, it is cancelled (the member's "this was not me").
pub async fn recovery_notice(
    profile: &Profile,
    cancel: bool,
) -> Result<Option<crate::api::RecoveryNotice>, ClientError> {
    api_of(profile)?
        .recovery_notice(profile.member()?, &profile.device_key()?, cancel)
        .await
}

/// What this enrolled device is told of its vault: a recovery under way and a deletion under
/// way (see [`Api::device_notices`]).
pub async fn device_notices(
    profile: &Profile,
) -> Result<
    (
        Option<crate::api::RecoveryNotice>,
        Option<crate::api::RecoveryNotice>,
    ),
    ClientError,
> {
    api_of(profile)?
        .device_notices(profile.member()?, &profile.device_key()?, false)
        .await
}

/// The API this profile enrolled with.
pub(crate) fn api_of(profile: &Profile) -> Result<Api, ClientError> {
    profile
        .state
        .api_url
        .as_deref()
        .map(Api::new)
        .ok_or_else(|| ClientError::Profile("the profile has no API URL".into()))
}

/// Renews this enrolled profile's NATS credentials with its device key and stores them; the
/// API ends the ones they replace. A renewal in the same second as the last issue is asked
/// to wait a second (429), which this does once.
pub async fn refresh(profile: &Profile) -> Result<crate::api::IssuedCreds, ClientError> {
    let api = api_of(profile)?;
    let member = profile.member()?;
    let device = profile.device_key()?;
    let key = profile.nats_key()?.public_key();
    let issued = match api.refresh(member, &device, &key).await {
        Err(ClientError::Api { status: 429, .. }) => {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            api.refresh(member, &device, &key).await?
        }
        other => other?,
    };
    profile.store_jwt(&issued.jwt)?;
    Ok(issued)
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
    let api = api_of(profile)?;
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

/// The profile keeps the newest version its vault showed: every session checks against it.
impl crate::vault::Seen for Profile {
    fn observe(
        &mut self,
        version: &vettid_proto::enclave::SignedVersion,
    ) -> Result<(), ClientError> {
        observe(self, version)
    }

    fn newest(&self) -> Option<vettid_proto::enclave::SignedVersion> {
        self.state.highest_signed()
    }
}

/// Records a signed version the vault showed, refusing rollback.
fn observe(
    profile: &mut Profile,
    version: &vettid_proto::enclave::SignedVersion,
) -> Result<(), ClientError> {
    let member = profile.member()?.to_owned();
    let identity = profile
        .state
        .identity()
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
