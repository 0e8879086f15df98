//! The app's connection to its vault: NATS with the member's own credentials, attestation
//! checked before anything secret is sent, then the hybrid Noise session.

use crate::ClientError;
use std::time::Duration;
use vettid_attest::manifest::Manifest;
use vettid_attest::{Policy, TrustedRoot, verify};
use vettid_crypto::SecretBytes;
use vettid_crypto::noise::{self, StatelessTransportState};
use vettid_crypto::sign::VerifyingKey;
use vettid_proto::enclave::SignedVersion;
use vettid_proto::enclave::VaultError;
use vettid_proto::session::{
    AppOp, AppReply, Channel, FromApp, Operation, Reply, Request, SessionId, ToApp, VERSION,
    kem_binding, open_plaintext, prologue, seal_plaintext,
};
use zeroize::Zeroizing;

/// How long one vault request may take (an unlock runs Argon2id in the enclave).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the app pins: the attestation root and the PCR-manifest signing key.
#[derive(Debug, Clone)]
pub struct Trust {
    root: TrustedRoot,
    manifest_key: VerifyingKey,
}

impl Trust {
    /// From a PEM root certificate and a hex Ed25519 manifest key.
    pub fn from_pem_and_hex(root_pem: &str, manifest_key_hex: &str) -> Result<Trust, ClientError> {
        let root = TrustedRoot::from_pem(root_pem)
            .map_err(|e| ClientError::Profile(format!("pinned root: {e}")))?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(manifest_key_hex.trim(), &mut key)
            .map_err(|_| ClientError::Profile("pinned manifest key is not 32 hex bytes".into()))?;
        let manifest_key = VerifyingKey::from_bytes(&key)
            .map_err(|_| ClientError::Profile("pinned manifest key is not a valid key".into()))?;
        Ok(Trust { root, manifest_key })
    }

    /// Verifies a signed PCR manifest with the pinned key; refuses serials below `seen`.
    pub fn manifest(&self, document: &str, seen: u64) -> Result<Manifest, ClientError> {
        Manifest::verify(document, &self.manifest_key, seen)
            .map_err(|e| ClientError::Untrusted(format!("PCR manifest: {e}")))
    }
}

/// An enclave whose attestation verified: the keys to open a session with.
#[derive(Debug, Clone)]
pub struct VerifiedEnclave {
    /// The enclave's static Noise key (bound as the document's `public_key`).
    pub noise_public_key: [u8; 32],
    /// The enclave's X-Wing key (bound by hash in the document's `user_data`).
    pub kem_public_key: Vec<u8>,
    /// The manifest release that trusts its PCRs.
    pub release: String,
    /// The document's module id.
    pub module_id: String,
}

/// How app messages reach the vault: NATS with the member's credentials, or another carrier
/// of the same bytes (a test tool standing in for a hostile host, another transport later).
#[derive(Clone)]
enum Carrier {
    Nats(async_nats::Client),
    Direct(Exchange),
}

/// A carrier of app messages other than NATS: given the channel and a postcard [`FromApp`],
/// it returns the postcard [`ToApp`] answer (or why there is none).
pub type Exchange = std::sync::Arc<
    dyn Fn(
            Channel,
            Vec<u8>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, String>> + Send>>
        + Send
        + Sync,
>;

/// The app's way to its vault (NATS with the member's credentials by default).
#[derive(Clone)]
pub struct VaultClient {
    carrier: Carrier,
    member: String,
}

/// Connects with a creds file's text, using the member's own inbox prefix (the only one its
/// credentials may subscribe to).
pub async fn connect(url: &str, creds: &str, member: &str) -> Result<VaultClient, ClientError> {
    let nats = async_nats::ConnectOptions::with_credentials(creds)
        .map_err(|e| ClientError::Nats(format!("creds: {e}")))?
        .custom_inbox_prefix(vettid_nats::member_inbox_prefix(member))
        .request_timeout(Some(REQUEST_TIMEOUT))
        .name("vettid-app")
        .connect(url)
        .await
        .map_err(|e| ClientError::Nats(format!("connecting to {url}: {e}")))?;
    Ok(VaultClient {
        carrier: Carrier::Nats(nats),
        member: member.to_owned(),
    })
}

impl VaultClient {
    /// A client whose messages travel by `exchange` instead of NATS. Everything above the
    /// carrier (attestation checks, the handshake, the envelope checks) is the same code.
    pub fn direct(member: &str, exchange: Exchange) -> VaultClient {
        VaultClient {
            carrier: Carrier::Direct(exchange),
            member: member.to_owned(),
        }
    }

    /// The NATS connection (`None` for a [`VaultClient::direct`] client).
    pub fn nats(&self) -> Option<&async_nats::Client> {
        match &self.carrier {
            Carrier::Nats(n) => Some(n),
            Carrier::Direct(_) => None,
        }
    }

    /// The member.
    pub fn member(&self) -> &str {
        &self.member
    }

    async fn send(&self, channel: Channel, message: &FromApp) -> Result<ToApp, ClientError> {
        let body = postcard::to_allocvec(message).expect("app messages always encode");
        let payload = match &self.carrier {
            Carrier::Nats(nats) => {
                let subject = format!("OwnerSpace.{}.forVault.{}", self.member, channel.as_str());
                nats.request(subject, body.into())
                    .await
                    .map_err(|e| ClientError::Nats(e.to_string()))?
                    .payload
                    .to_vec()
            }
            Carrier::Direct(exchange) => {
                exchange(channel, body).await.map_err(ClientError::Nats)?
            }
        };
        let answer: ToApp = vettid_proto::session::decode_exact(&payload)
            .ok_or_else(|| ClientError::Protocol("undecodable answer".into()))?;
        match answer {
            ToApp::Refused(e) => Err(ClientError::Session(e)),
            other => Ok(other),
        }
    }

    /// Asks for an attestation document bound to a fresh nonce and verifies it: signature,
    /// chain to the pinned root, freshness, nonce, PCRs in the signed manifest, and that it
    /// binds the session keys it comes with. Nothing secret has been sent when this fails.
    pub async fn attest(
        &self,
        trust: &Trust,
        manifest: &Manifest,
    ) -> Result<VerifiedEnclave, ClientError> {
        let nonce: [u8; 32] = vettid_crypto::random_array();
        let ToApp::Attestation {
            doc,
            kem_public_key,
        } = self
            .send(Channel::Attestation, &FromApp::Attest { nonce })
            .await?
        else {
            return Err(ClientError::Protocol("expected an attestation".into()));
        };
        check_attestation(
            trust,
            manifest,
            &nonce,
            &doc,
            &kem_public_key,
            crate::now_ms() / 1000,
        )
    }

    /// Runs the handshake on `channel` as the device with static key `device`.
    pub async fn open_session(
        &self,
        channel: Channel,
        device: &SecretBytes<32>,
        enclave: &VerifiedEnclave,
    ) -> Result<Session, ClientError> {
        let (ciphertext, psk) = noise::encapsulate(&enclave.kem_public_key)
            .ok_or_else(|| ClientError::Untrusted("unusable X-Wing key".into()))?;
        let mut hs = noise::initiator(
            &prologue(&self.member, channel),
            device,
            &enclave.noise_public_key,
            &psk,
        )
        .map_err(crypto)?;
        let mut buf = vec![0u8; noise::MAX_MESSAGE];
        let n = hs.write_message(&ciphertext, &mut buf).map_err(crypto)?;
        let ToApp::Accept { session, msg } = self
            .send(
                channel,
                &FromApp::Hello {
                    msg: buf[..n].to_vec(),
                },
            )
            .await?
        else {
            return Err(ClientError::Protocol("expected handshake message 2".into()));
        };
        let mut payload = vec![0u8; noise::MAX_MESSAGE];
        hs.read_message(&msg, &mut payload).map_err(crypto)?;
        let n = hs.write_message(&[], &mut buf).map_err(crypto)?;
        let ToApp::Established { session: s } = self
            .send(
                channel,
                &FromApp::Finish {
                    session,
                    msg: buf[..n].to_vec(),
                },
            )
            .await?
        else {
            return Err(ClientError::Protocol("expected the session to open".into()));
        };
        if s != session {
            return Err(ClientError::Protocol("session id changed".into()));
        }
        Ok(Session {
            client: self.clone(),
            channel,
            id: session,
            transport: hs.into_stateless_transport_mode().map_err(crypto)?,
            counter: 0,
            anchored: 0,
        })
    }
}

fn crypto(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(format!("handshake: {e}"))
}

/// The checks of [`VaultClient::attest`], on a received document (`at_secs`: now).
pub fn check_attestation(
    trust: &Trust,
    manifest: &Manifest,
    nonce: &[u8; 32],
    doc: &[u8],
    kem_public_key: &[u8],
    at_secs: u64,
) -> Result<VerifiedEnclave, ClientError> {
    let mut policy = Policy::new(&trust.root, at_secs);
    policy.nonce = Some(nonce);
    let verified = verify(doc, &policy)
        .map_err(|e| ClientError::Untrusted(format!("attestation {}: {e}", e.code())))?;
    let release = manifest
        .trusts(&verified.pcrs, at_secs)
        .map_err(|e| ClientError::Untrusted(format!("PCRs not in the signed manifest: {e}")))?
        .id
        .clone();
    let noise_public_key: [u8; 32] = verified
        .public_key
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| ClientError::Untrusted("no session key bound in the document".into()))?;
    let bound = verified.user_data.as_deref().unwrap_or_default();
    if !vettid_crypto::ct_eq(bound, &kem_binding(kem_public_key)) {
        return Err(ClientError::Untrusted(
            "the X-Wing key is not the one bound in the document".into(),
        ));
    }
    Ok(VerifiedEnclave {
        noise_public_key,
        kem_public_key: kem_public_key.to_vec(),
        release,
        module_id: verified.module_id,
    })
}

/// An open session. Requests run one at a time (counters must arrive in order).
pub struct Session {
    client: VaultClient,
    channel: Channel,
    id: SessionId,
    transport: StatelessTransportState,
    counter: u64,
    /// The newest version this session showed the enclave ([`Session::anchor`]; 0: none).
    anchored: u64,
}

impl Session {
    /// Sends `op` and waits for its reply, without checking the vault version it carries: for
    /// the session's own operations (the typed methods below); vault data goes through
    /// [`Unlocked`], which checks every version.
    pub(crate) async fn call(&mut self, op: AppOp) -> Result<AppReply, ClientError> {
        self.exchange(op).await?.0.map_err(ClientError::Vault)
    }

    /// Test support (not for apps): sends any `op` as [`Session::call`] does, with no check of
    /// the vault version its answer carries — to show what the enclave itself refuses.
    #[doc(hidden)]
    pub async fn unchecked_call(&mut self, op: AppOp) -> Result<AppReply, ClientError> {
        self.call(op).await
    }

    /// Sends `op`: its outcome and the vault's signed version the reply carries.
    async fn exchange(
        &mut self,
        op: AppOp,
    ) -> Result<(Result<AppReply, VaultError>, Option<SignedVersion>), ClientError> {
        self.counter += 1;
        let counter = self.counter;
        let request = self.request(op, counter, crate::now_ms())?;
        let answer = self.client.send(self.channel, &request).await?;
        let ToApp::Reply {
            counter: c,
            ciphertext,
        } = answer
        else {
            return Err(ClientError::Protocol("expected a reply".into()));
        };
        if c != counter {
            return Err(ClientError::Protocol("reply to another request".into()));
        }
        let mut plain = zeroize::Zeroizing::new(vec![0u8; ciphertext.len()]);
        let n = self
            .transport
            .read_message(counter, &ciphertext, &mut plain)
            .map_err(|_| ClientError::Protocol("reply does not authenticate".into()))?;
        let reply: Reply = open_plaintext(&plain[..n])
            .ok_or_else(|| ClientError::Protocol("undecodable reply".into()))?;
        if reply.version != VERSION || reply.id != counter {
            return Err(ClientError::Protocol("reply envelope mismatch".into()));
        }
        Ok((reply.result, reply.vault_version))
    }

    /// Gives the vault its PIN: the session becomes [`Unlocked`], whose answers are each
    /// checked against (and recorded in) `seen` before they are returned. The unlock's own
    /// version is checked first: a rolled-back or forked vault opens nothing. (On a refusal
    /// the session is gone: connect again.)
    pub async fn unlock<S: Seen>(
        self,
        pin: Zeroizing<Vec<u8>>,
        seen: S,
    ) -> Result<Unlocked<S>, ClientError> {
        self.open_vault(AppOp::Unlock { pin }, seen).await
    }

    /// For a member who forgot the PIN: sets `new_pin` with the recovery `phrase` (the enclave
    /// counts the attempt with the PIN's), and the session becomes [`Unlocked`] as with
    /// [`Session::unlock`].
    pub async fn reset_pin<S: Seen>(
        self,
        phrase: &crate::recovery::RecoveryPhrase,
        new_pin: Zeroizing<Vec<u8>>,
        seen: S,
    ) -> Result<Unlocked<S>, ClientError> {
        let phrase = phrase.entropy();
        self.open_vault(AppOp::ResetPin { phrase, new_pin }, seen)
            .await
    }

    async fn open_vault<S: Seen>(
        mut self,
        op: AppOp,
        mut seen: S,
    ) -> Result<Unlocked<S>, ClientError> {
        // The enclave first learns the newest version this app saw, so that it checks the
        // whole history extends it (a fork grown past that number is caught there).
        if let Some(newest) = seen.newest()
            && newest.version > self.anchored
        {
            self.anchor(newest).await?;
        }
        let AppReply::Unlocked { version, event_key } = self.call(op).await? else {
            return Err(ClientError::Protocol("expected Unlocked".into()));
        };
        seen.observe(&version)?;
        Ok(Unlocked {
            session: self,
            seen,
            version,
            event_key,
        })
    }

    /// Residency and guess limit; a version shown is checked against `seen`.
    pub async fn status<S: Seen>(&mut self, mut seen: S) -> Result<Status, ClientError> {
        let AppReply::Status {
            unlocked,
            attempts_left,
            version,
        } = self.call(AppOp::Status).await?
        else {
            return Err(ClientError::Protocol("expected Status".into()));
        };
        if let Some(v) = &version {
            seen.observe(v)?;
        }
        Ok(Status {
            unlocked,
            attempts_left,
            version: version.map(|v| v.version),
        })
    }

    /// Who the vault is; a version shown is checked against `seen`.
    pub async fn whoami<S: Seen>(&mut self, mut seen: S) -> Result<Whoami, ClientError> {
        let AppReply::Whoami {
            member,
            identity_public_key,
            device_public_key,
            version,
        } = self.call(AppOp::Whoami).await?
        else {
            return Err(ClientError::Protocol("expected Whoami".into()));
        };
        if let Some(v) = &version {
            seen.observe(v)?;
        }
        Ok(Whoami {
            member,
            identity_public_key,
            device_public_key,
            version: version.map(|v| v.version),
        })
    }

    /// Locks the vault (the enclave forgets its keys; every session needs the PIN again).
    pub async fn lock(&mut self) -> Result<(), ClientError> {
        match self.call(AppOp::Lock).await? {
            AppReply::Locked => Ok(()),
            _ => Err(ClientError::Protocol("expected Locked".into())),
        }
    }

    /// Shows the enclave the highest version this app has seen (signed by the vault): from
    /// then on it serves this session only a state that extends it, and raises its own mark.
    /// `Vault(RolledBack)` when the vault's storage is older or forked.
    pub async fn anchor(
        &mut self,
        seen: vettid_proto::enclave::SignedVersion,
    ) -> Result<(), ClientError> {
        let number = seen.version;
        match self.call(AppOp::Anchor { seen }).await? {
            AppReply::Anchored => {
                self.anchored = self.anchored.max(number);
                Ok(())
            }
            _ => Err(ClientError::Protocol("expected Anchored".into())),
        }
    }

    /// Test support: a request message with a chosen counter and timestamp (to replay,
    /// reorder or age it). Later [`Session::call`]s continue above `counter`.
    #[doc(hidden)]
    pub fn raw_request(
        &mut self,
        op: AppOp,
        counter: u64,
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, ClientError> {
        self.counter = self.counter.max(counter);
        let request = self.request(op, counter, timestamp_ms)?;
        Ok(postcard::to_allocvec(&request).expect("app messages always encode"))
    }

    /// The envelope for `op`, padded and encrypted with `counter` as nonce.
    fn request(&self, op: AppOp, counter: u64, timestamp_ms: u64) -> Result<FromApp, ClientError> {
        let request = zeroize::Zeroizing::new(seal_plaintext(&Request {
            version: VERSION,
            id: counter,
            timestamp_ms,
            op,
        }));
        let mut ciphertext = vec![0u8; request.len() + noise::TAG_LEN];
        let n = self
            .transport
            .write_message(counter, &request, &mut ciphertext)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        ciphertext.truncate(n);
        Ok(FromApp::Request {
            session: self.id,
            counter,
            ciphertext,
        })
    }

    /// The session's subject.
    pub fn subject(&self) -> String {
        format!(
            "OwnerSpace.{}.forVault.{}",
            self.client.member,
            self.channel.as_str()
        )
    }
}

/// The vault's residency and guess limit, as [`Session::status`] saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Whether the vault is unlocked (in any session).
    pub unlocked: bool,
    /// Wrong PINs left before the vault locks.
    pub attempts_left: u32,
    /// The checked state version, when unlocked.
    pub version: Option<u64>,
}

/// Who the vault is, as [`Session::whoami`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whoami {
    /// The member.
    pub member: String,
    /// The vault's identity key.
    pub identity_public_key: [u8; 32],
    /// This session's device key.
    pub device_public_key: [u8; 32],
    /// The checked state version, when unlocked.
    pub version: Option<u64>,
}

/// Where the app keeps the newest vault-signed version it has seen: the profile on disk
/// ([`crate::profile::Profile`]) or memory ([`Mark`]).
pub trait Seen {
    /// Checks `version` (signed by the vault, not older than the newest seen, the same change
    /// at the same number) and records it when newer; `Rollback` or `Protocol` otherwise.
    fn observe(&mut self, version: &SignedVersion) -> Result<(), ClientError>;

    /// The newest version seen, as the vault signed it (what [`Session::unlock`] shows the
    /// enclave first); `None` when nothing was seen yet.
    fn newest(&self) -> Option<SignedVersion>;
}

/// The newest version seen, in memory (tools and tests; an app keeps it in its profile).
#[derive(Debug, Clone)]
pub struct Mark {
    member: String,
    identity: [u8; 32],
    newest: Option<SignedVersion>,
}

impl Mark {
    /// Nothing seen yet of `member`'s vault with identity key `identity`.
    pub fn new(member: &str, identity: [u8; 32]) -> Mark {
        Mark {
            member: member.to_owned(),
            identity,
            newest: None,
        }
    }

    /// The number of the newest version seen (0: none).
    pub fn highest(&self) -> u64 {
        self.newest.as_ref().map_or(0, |v| v.version)
    }
}

impl Seen for Mark {
    fn observe(&mut self, version: &SignedVersion) -> Result<(), ClientError> {
        check_version(
            &self.member,
            &self.identity,
            version,
            self.highest(),
            self.newest.as_ref().map(|v| v.change_hash.as_slice()),
        )?;
        self.newest = Some(version.clone());
        Ok(())
    }

    fn newest(&self) -> Option<SignedVersion> {
        self.newest.clone()
    }
}

/// Whatever records versions through a mutable reference records them (`&mut Profile`).
impl<T: Seen + ?Sized> Seen for &mut T {
    fn observe(&mut self, version: &SignedVersion) -> Result<(), ClientError> {
        (**self).observe(version)
    }

    fn newest(&self) -> Option<SignedVersion> {
        (**self).newest()
    }
}

/// A session in which this app gave the vault's PIN: the only way to the vault's data. Every
/// answer's signed version is checked against `seen` (rollback, fork) and recorded before the
/// answer is returned; an answer that should carry one and does not is refused.
pub struct Unlocked<S: Seen> {
    session: Session,
    seen: S,
    version: SignedVersion,
    event_key: Zeroizing<[u8; 32]>,
}

impl<S: Seen> Unlocked<S> {
    /// The NATS client the session travels on (the vault's events come through it too).
    pub fn client(&self) -> &VaultClient {
        &self.session.client
    }

    /// Runs one operation: its typed answer, after its vault version was checked.
    pub async fn run<O: Operation>(&mut self, op: O) -> Result<O::Reply, ClientError> {
        let reply = self.call(op.into()).await?;
        O::reply(reply).ok_or_else(|| ClientError::Protocol("answer of another kind".into()))
    }

    /// Sends an operation on the vault's state (data, credential, status, whoami; the typed
    /// methods are better); checks and records the version its answer carries. Such an answer
    /// always carries one; only a refusal may come without.
    pub async fn call(&mut self, op: AppOp) -> Result<AppReply, ClientError> {
        if matches!(
            op,
            AppOp::Enroll { .. }
                | AppOp::Unlock { .. }
                | AppOp::ResetPin { .. }
                | AppOp::Lock
                | AppOp::Ping
                | AppOp::Anchor { .. }
        ) {
            return Err(ClientError::Protocol(
                "not an operation on the unlocked vault's state".into(),
            ));
        }
        // Status and whoami answer without a version once the vault is locked (by another
        // session, or the guess limit): their answers say so themselves.
        let must_carry = !matches!(op, AppOp::Status | AppOp::Whoami);
        let (result, version) = self.session.exchange(op).await?;
        self.record(&result, version, must_carry)?;
        result.map_err(ClientError::Vault)
    }

    /// Checks and records the version an answer carried (see [`Unlocked::call`]).
    pub(crate) fn record(
        &mut self,
        result: &Result<AppReply, VaultError>,
        version: Option<SignedVersion>,
        must_carry: bool,
    ) -> Result<(), ClientError> {
        match (result, version) {
            (_, Some(v)) => {
                self.seen.observe(&v)?;
                self.version = v;
                Ok(())
            }
            // Refusals carry it when the vault was open to take it (a domain's refusal always
            // does, and it is checked then); not when the unlock was superseded, the vault
            // locked out, a password was wrong or storage failed.
            (Err(_), None) => Ok(()),
            (Ok(_), None) if !must_carry => Ok(()),
            (Ok(_), None) => Err(ClientError::Protocol(
                "an unlocked vault's answer carries no version".into(),
            )),
        }
    }

    /// Sends `op` and returns what came back with its version, unchecked: for an answer that
    /// must be kept before it is checked (a rotated credential blob).
    pub(crate) async fn exchange(
        &mut self,
        op: AppOp,
    ) -> Result<(Result<AppReply, VaultError>, Option<SignedVersion>), ClientError> {
        self.session.exchange(op).await
    }

    /// The newest vault version this session was shown (checked).
    pub fn version(&self) -> u64 {
        self.version.version
    }

    /// That version as the vault signed it (to show another session: [`Session::anchor`]).
    pub fn signed_version(&self) -> &SignedVersion {
        &self.version
    }

    /// `version`, named inside an answer, if it is the one the answer's envelope carried
    /// (already checked): a reply that names another is refused.
    pub(crate) fn checked(&self, version: SignedVersion) -> Result<SignedVersion, ClientError> {
        if version == self.version {
            Ok(version)
        } else {
            Err(ClientError::Protocol(
                "the answer names another version than the one it carries".into(),
            ))
        }
    }

    /// The key of the vault's events (from the unlock).
    pub fn event_key(&self) -> &Zeroizing<[u8; 32]> {
        &self.event_key
    }

    /// Where the versions are recorded.
    pub fn seen(&mut self) -> &mut S {
        &mut self.seen
    }

    /// Does nothing in the enclave: the session's round trip.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        match self.session.call(AppOp::Ping).await? {
            AppReply::Pong => Ok(()),
            _ => Err(ClientError::Protocol("expected Pong".into())),
        }
    }

    /// Who the vault is (its version checked and recorded like every other).
    pub async fn whoami(&mut self) -> Result<Whoami, ClientError> {
        let AppReply::Whoami {
            member,
            identity_public_key,
            device_public_key,
            version,
        } = self.call(AppOp::Whoami).await?
        else {
            return Err(ClientError::Protocol("expected Whoami".into()));
        };
        Ok(Whoami {
            member,
            identity_public_key,
            device_public_key,
            version: version.map(|v| v.version),
        })
    }

    /// Locks the vault (every session needs the PIN again): the session, no longer unlocked.
    pub async fn lock(mut self) -> Result<Session, ClientError> {
        self.session.lock().await?;
        Ok(self.session)
    }
}

/// Checks a signed version against the highest one seen (`seen`, with its change hash): it
/// must verify under the vault's identity, not be older, and at the same number carry the
/// same change (else the vault's history forked: rolled back, then rewritten). Returns the
/// new highest.
pub fn check_version(
    member: &str,
    identity: &[u8; 32],
    version: &SignedVersion,
    seen: u64,
    seen_hash: Option<&[u8]>,
) -> Result<u64, ClientError> {
    let key = VerifyingKey::from_bytes(identity)
        .map_err(|_| ClientError::Protocol("bad identity key".into()))?;
    let hash: [u8; 32] = version
        .change_hash
        .as_slice()
        .try_into()
        .map_err(|_| ClientError::Protocol("bad change hash".into()))?;
    let sig: [u8; 64] = version
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| ClientError::Protocol("bad signature".into()))?;
    let message = [
        b"vettid/v1/state-version\0".as_slice(),
        member.as_bytes(),
        &[0],
        &version.version.to_be_bytes(),
        &hash,
    ]
    .concat();
    key.verify(&message, &vettid_crypto::sign::Signature::from_bytes(sig))
        .map_err(|_| ClientError::Protocol("state version not signed by the vault".into()))?;
    let forked = version.version == seen
        && seen_hash.is_some_and(|h| !vettid_crypto::ct_eq(h, &version.change_hash));
    if version.version < seen || forked {
        return Err(ClientError::Rollback {
            got: version.version,
            seen,
        });
    }
    Ok(version.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(
        key: &vettid_crypto::sign::SigningKey,
        member: &str,
        v: u64,
        hash: [u8; 32],
    ) -> SignedVersion {
        let message = [
            b"vettid/v1/state-version\0".as_slice(),
            member.as_bytes(),
            &[0],
            &v.to_be_bytes(),
            &hash,
        ]
        .concat();
        SignedVersion {
            version: v,
            identity: key.verifying_key().to_bytes().to_vec(),
            signature: key.sign(&message).to_bytes().to_vec(),
            change_hash: hash.to_vec(),
        }
    }

    #[test]
    fn versions_must_be_signed_not_older_and_not_forked() {
        let key = vettid_crypto::sign::SigningKey::generate();
        let id = key.verifying_key().to_bytes();
        let v5 = signed(&key, "m", 5, [1; 32]);
        assert_eq!(check_version("m", &id, &v5, 4, Some(&[9; 32])).unwrap(), 5);
        assert_eq!(check_version("m", &id, &v5, 5, Some(&[1; 32])).unwrap(), 5);
        // Older: rollback.
        assert!(matches!(
            check_version("m", &id, &v5, 6, None),
            Err(ClientError::Rollback { got: 5, seen: 6 })
        ));
        // Same number, another change: a fork.
        assert!(matches!(
            check_version("m", &id, &v5, 5, Some(&[2; 32])),
            Err(ClientError::Rollback { .. })
        ));
        // Another member's, or another key's signature: refused.
        assert!(matches!(
            check_version("n", &id, &v5, 0, None),
            Err(ClientError::Protocol(_))
        ));
        let other = vettid_crypto::sign::SigningKey::generate();
        let forged = signed(&other, "m", 9, [1; 32]);
        assert!(matches!(
            check_version("m", &id, &forged, 0, None),
            Err(ClientError::Protocol(_))
        ));
    }
}
