//! A real dev platform and a real enclave process behind `vettid_testkit::AdversarialHost`, and
//! an app (the real SDK) that reaches the enclave through that host.

use super::{FAST_ARGON, Platform};
use vettid_client::ClientError;
use vettid_client::vault::{Session, Trust, VaultClient, check_version};
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
            .call(AppOp::Enroll {
                pin: Zeroizing::new(PIN.as_bytes().to_vec()),
                password_verifier: Zeroizing::new(VERIFIER),
                device_name: "phone".into(),
            })
            .await?;
        let AppReply::Enrolled(enrolled) = reply else {
            panic!("expected Enrolled")
        };
        drop(session);
        Ok(enrolled)
    }

    /// A session of `device` on `member`'s vault, unlocked with `pin`.
    pub async fn unlocked(
        &self,
        member: &str,
        device: &SecretBytes<32>,
        pin: &str,
    ) -> Result<(Session, SignedVersion), ClientError> {
        let mut session = self.session(member, device, Channel::Session).await?;
        let reply = session
            .call(AppOp::Unlock {
                pin: Zeroizing::new(pin.as_bytes().to_vec()),
            })
            .await?;
        let AppReply::Unlocked { version, .. } = reply else {
            panic!("expected Unlocked")
        };
        Ok((session, version))
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
        let reply = session
            .call(AppOp::Unlock {
                pin: Zeroizing::new(pin.as_bytes().to_vec()),
            })
            .await?;
        let AppReply::Unlocked { version, .. } = reply else {
            panic!("expected Unlocked")
        };
        let identity: [u8; 32] = seen.identity.as_slice().try_into().unwrap();
        app_accepts(member, &identity, &version, seen)?;
        Ok(version)
    }
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
pub async fn item_names(session: &mut Session) -> Result<Vec<String>, ClientError> {
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
pub async fn enrolled(adv: &Adversary, member: &str, device: &SecretBytes<32>) -> Session {
    adv.enroll(member, device).await.unwrap();
    adv.unlocked(member, device, PIN).await.unwrap().0
}
