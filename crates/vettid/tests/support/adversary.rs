//! A real dev platform and a real enclave process behind `vettid_testkit::AdversarialHost`, and
//! an app (the real SDK) that reaches the enclave through that host.

use super::{FAST_ARGON, Platform};
use vettid_client::ClientError;
use vettid_client::vault::{Mark, Session, Trust, Unlocked, VaultClient, check_version};
use vettid_crypto::SecretBytes;
use vettid_proto::enclave::SignedVersion;
use vettid_proto::secrets::{ItemContent, Secret, SecretData};
use vettid_proto::session::{AppOp, AppReply, Channel, Enrolled};
use vettid_testkit::{AdversarialHost, Options};
use zeroize::Zeroizing;

pub const PIN: &str = "246810";
pub const VERIFIER: [u8; 32] = [7; 32];

/// Fields drop in order: the host (and its enclave) before the platform.
pub struct Adversary {
    pub host: AdversarialHost,
    pub platform: Platform,
    pub dir: tempfile::TempDir,
}

impl Adversary {
    /// A platform (test Argon2id cost, plus the policy flags among `args`), and an
    /// adversarial host serving the enclave it launched (with the other flags as resource
    /// settings).
    pub fn start(args: &[&str]) -> Adversary {
        let dir = tempfile::tempdir().unwrap();
        let (policy, tunables) = super::split_policy(args);
        let policy = [&FAST_ARGON[..], &policy].concat();
        let platform = Platform::start_with(&dir.path().join("platform"), &policy);
        let host = AdversarialHost::start(Options {
            tunables: tunables.iter().map(|s| s.to_string()).collect(),
            dir: dir.path().join("host"),
            platform: platform.socket(),
            key_service: platform.key_service(),
        })
        .unwrap();
        Adversary {
            host,
            platform,
            dir,
        }
    }

    /// What a real app pins for this platform: its dev root and manifest key.
    pub fn trust(&self) -> Trust {
        let read = |p: &str| std::fs::read_to_string(self.platform.dir.join(p)).unwrap();
        Trust::from_pem_and_hex(
            &read("dev-attestor/root.pem"),
            &read("manifest/signing.pub"),
        )
        .unwrap()
    }

    /// An app of `member` as device `device`: attestation checked, session open on `channel`.
    pub async fn session(
        &self,
        member: &str,
        device: &SecretBytes<32>,
        channel: Channel,
    ) -> Result<Session, ClientError> {
        let client: VaultClient = self.host.app(member);
        let trust = self.trust();
        let manifest =
            std::fs::read_to_string(self.platform.dir.join("manifest/pcr-manifest.json")).unwrap();
        let manifest = trust.manifest(&manifest, 0)?;
        let enclave = client.attest(&trust, &manifest).await?;
        client.open_session(channel, device, &enclave).await
    }

    /// Enrolls `member` with device `device` and [`PIN`].
    pub async fn enroll(
        &self,
        member: &str,
        device: &SecretBytes<32>,
    ) -> Result<Box<Enrolled>, ClientError> {
        let mut session = self.session(member, device, Channel::Enroll).await?;
        let reply = session
            .unchecked_call(AppOp::Enroll {
                pin: Zeroizing::new(PIN.as_bytes().to_vec()),
                password_verifier: Zeroizing::new(VERIFIER),
                device_name: "phone".into(),
                device: binding(member, device),
            })
            .await?;
        let AppReply::Enrolled(enrolled) = reply else {
            panic!("expected Enrolled")
        };
        drop(session);
        Ok(enrolled)
    }

    /// A session of `device` on `member`'s vault, unlocked with `pin` by the SDK (which checks
    /// every version it is shown from then on), and the unlock's version.
    pub async fn unlocked(
        &self,
        member: &str,
        device: &SecretBytes<32>,
        pin: &str,
    ) -> Result<(Unlocked<Mark>, SignedVersion), ClientError> {
        let mut session = self.session(member, device, Channel::Session).await?;
        // The app knows its vault's identity from enrollment; this test app asks for it.
        let AppReply::Whoami {
            identity_public_key,
            ..
        } = session.unchecked_call(AppOp::Whoami).await?
        else {
            panic!("expected Whoami")
        };
        let s = session
            .unlock(
                Zeroizing::new(pin.as_bytes().to_vec()),
                Mark::new(member, identity_public_key),
            )
            .await?;
        let version = s.signed_version().clone();
        Ok((s, version))
    }

    /// A session of `device` on `member`'s vault, unlocked with `pin`, recording what it sees
    /// in `seen` (an app's profile).
    pub async fn unlocked_with<S: vettid_client::vault::Seen>(
        &self,
        member: &str,
        device: &SecretBytes<32>,
        pin: &str,
        seen: S,
    ) -> Result<Unlocked<S>, ClientError> {
        self.session(member, device, Channel::Session)
            .await?
            .unlock(Zeroizing::new(pin.as_bytes().to_vec()), seen)
            .await
    }
}

impl Adversary {
    /// [`Adversary::unlocked`] by an app that has seen `seen` (and checks what it gets
    /// against it, as the SDK does).
    pub async fn unlocked_after(
        &self,
        member: &str,
        device: &SecretBytes<32>,
        pin: &str,
        seen: &SignedVersion,
    ) -> Result<SignedVersion, ClientError> {
        let mut session = self.session(member, device, Channel::Session).await?;
        session.anchor(seen.clone()).await?;
        let version = unlock(&mut session, pin).await?;
        let identity: [u8; 32] = seen.identity.as_slice().try_into().unwrap();
        app_accepts(member, &identity, &version, seen)?;
        Ok(version)
    }
}

/// Gives `pin` in `session`; the signed version.
async fn unlock(session: &mut Session, pin: &str) -> Result<SignedVersion, ClientError> {
    let reply = session
        .unchecked_call(AppOp::Unlock {
            pin: Zeroizing::new(pin.as_bytes().to_vec()),
        })
        .await?;
    let AppReply::Unlocked { version, .. } = reply else {
        panic!("expected Unlocked")
    };
    Ok(version)
}

/// A note item.
pub fn note(name: &str) -> ItemContent {
    ItemContent {
        name: name.into(),
        folder: None,
        tags: vec![],
        data: SecretData::Note {
            text: Secret::new("x"),
        },
        fields: vec![],
    }
}

/// The names of the vault's live items.
pub async fn item_names(session: &mut Unlocked<Mark>) -> Result<Vec<String>, ClientError> {
    let items = session.list_secrets(None, None, None, false).await?;
    Ok(items.into_iter().map(|i| i.name).collect())
}

/// The app's rollback check of a version against the highest seen.
pub fn app_accepts(
    member: &str,
    identity: &[u8; 32],
    version: &SignedVersion,
    seen: &SignedVersion,
) -> Result<u64, ClientError> {
    check_version(
        member,
        identity,
        version,
        seen.version,
        Some(&seen.change_hash),
    )
}

/// Enrolls `member` and opens an unlocked session of the same device.
pub async fn enrolled(adv: &Adversary, member: &str, device: &SecretBytes<32>) -> Unlocked<Mark> {
    adv.enroll(member, device).await.unwrap();
    adv.unlocked(member, device, PIN).await.unwrap().0
}

/// A key service of the host's own: TLS with a certificate for the dev key service's name
/// under a root the host made, speaking the KMS API and answering every data-key request with
/// a key the host chose (CMS to the recipient key in the request's document). It counts the
/// requests that reached it through TLS.
pub struct FakeKeyService {
    pub socket: std::path::PathBuf,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub chosen: [u8; 32],
}

impl FakeKeyService {
    pub fn start(dir: &std::path::Path, attestation_root_pem: &str) -> FakeKeyService {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["kms.vettid.dev".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
        );
        let socket = dir.join("fake-kms.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let chosen = [0x42u8; 32];
        let root = vettid_attest::TrustedRoot::from_pem(attestation_root_pem).unwrap();
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let Ok(conn) = rustls::ServerConnection::new(tls.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut reader = std::io::BufReader::new(&mut tls);
                let Ok(req) = vettid_attest::seal::kms::http::read_request(&mut reader) else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = forge_answer(&req.body, &root, &chosen);
                let _ = vettid_attest::seal::kms::http::write_response(
                    &mut tls,
                    200,
                    "application/x-amz-json-1.1",
                    &answer,
                );
            }
        });
        FakeKeyService {
            socket,
            requests,
            chosen,
        }
    }
}

/// What a lying key service answers: the host's key, encrypted to the document's recipient.
fn forge_answer(body: &[u8], root: &vettid_attest::TrustedRoot, key: &[u8; 32]) -> Vec<u8> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use rsa::pkcs8::DecodePublicKey;
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let doc = request
        .pointer("/Recipient/AttestationDocument")
        .and_then(|v| v.as_str())
        .and_then(|t| B64.decode(t).ok())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let Ok(verified) = vettid_attest::verify(&doc, &vettid_attest::Policy::new(root, now)) else {
        return b"{}".to_vec();
    };
    let recipient = rsa::PublicKey::from_public_key_der(&verified.public_key.unwrap()).unwrap();
    let cms = vettid_attest::dev::envelope_for(&recipient, key).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "CiphertextBlob": B64.encode(b"chosen by the host"),
        "CiphertextForRecipient": B64.encode(cms),
        "KeyId": "host",
    }))
    .unwrap()
}

/// The sealed secret inside a stored keys object (format byte, then postcard bytes).
pub fn sealed_secret(keys: &[u8]) -> Vec<u8> {
    let rest = &keys[1..];
    let (mut len, mut shift, mut i) = (0usize, 0, 0);
    loop {
        len |= ((rest[i] & 0x7f) as usize) << shift;
        shift += 7;
        i += 1;
        if rest[i - 1] & 0x80 == 0 {
            break;
        }
    }
    rest[i..i + len].to_vec()
}

/// The host's own way to the key service: a direct connection to its socket.
pub struct DirectKeyService(pub std::path::PathBuf);

impl vettid_attest::seal::kms::Transport for DirectKeyService {
    fn connect(
        &self,
    ) -> Result<Box<dyn vettid_attest::seal::kms::Stream>, vettid_attest::seal::SealError> {
        std::os::unix::net::UnixStream::connect(&self.0)
            .map(|s| Box::new(s) as Box<dyn vettid_attest::seal::kms::Stream>)
            .map_err(|e| vettid_attest::seal::SealError::KeyService(e.to_string()))
    }
    fn now_secs(&self) -> Result<u64, vettid_attest::seal::SealError> {
        Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs())
    }
    fn credentials(
        &self,
    ) -> Result<vettid_attest::seal::kms::Credentials, vettid_attest::seal::SealError> {
        Ok(vettid_attest::seal::kms::Credentials {
            access_key_id: "host".into(),
            secret_access_key: zeroize::Zeroizing::new("host".into()),
            session_token: None,
        })
    }
}

/// The device-key binding an app of `member` with session key `device` sends with its
/// enrollment (its device key derived from the same seed, for tests).
pub fn binding(member: &str, device: &SecretBytes<32>) -> vettid_proto::auth::DeviceBinding {
    vettid_proto::auth::DeviceBinding::sign(
        member,
        &vettid_crypto::noise::public_key(device),
        &vettid_crypto::sign::SigningKey::from_seed(device),
    )
}
