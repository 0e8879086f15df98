//! The app's profile directory: what a phone keeps in its secure storage.
//!
//! ```text
//! profile.json       member, API and NATS URLs, highest vault version and manifest serial seen
//! device.key         Ed25519 device key (signs credential renewals to the API)       0600
//! noise.key          X25519 static key of this device's Noise sessions with the vault 0600
//! nats.seed          the app's own NATS user seed (never sent anywhere)              0600
//! nats.creds         standard creds file: the API-signed JWT + the seed               0600
//! credential.blob    the split-custody credential (opened only by the vault)         0600
//! event.key          key of the vault's events                                        0600
//! trust/root.pem     pinned attestation root
//! trust/manifest.pub pinned PCR-manifest signing key (hex Ed25519)
//! ```
//!
//! Secret files are created with mode 0600 and replaced atomically (write, fsync, rename).

use crate::ClientError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use vettid_crypto::SecretBytes;
use vettid_crypto::sign::SigningKey;
use zeroize::Zeroizing;

/// The non-secret state of a profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The member (vault id), once known.
    pub member_id: Option<String>,
    /// The API base URL.
    pub api_url: Option<String>,
    /// The NATS URL.
    pub nats_url: Option<String>,
    /// This device's name.
    pub device_name: Option<String>,
    /// Whether enrollment completed.
    pub enrolled: bool,
    /// Highest vault state version seen (rollback protection).
    pub highest_version: u64,
    /// The change hash at that version (hex): the same number with another change is a fork.
    #[serde(default)]
    pub highest_change_hash: Option<String>,
    /// The vault's signature of that version (hex): shown to the enclave at every session
    /// ([`vettid_proto::session::AppOp::Anchor`]) so it refuses to serve older or forked state.
    #[serde(default)]
    pub highest_signature: Option<String>,
    /// Highest PCR-manifest serial accepted.
    pub manifest_serial: u64,
    /// The vault's identity public key (hex), once enrolled.
    pub identity_public_key: Option<String>,
    /// The vault's exchange public key (hex), once enrolled.
    pub exchange_public_key: Option<String>,
}

/// A profile directory, held exclusively by one process at a time (a lock file), so that two
/// app processes cannot interleave writes or lower the rollback marks.
pub struct Profile {
    dir: PathBuf,
    /// Its state (saved with [`Profile::save`]).
    pub state: State,
    _lock: std::fs::File,
}

fn err(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Profile(format!("{}: {e}", path.display()))
}

impl State {
    /// The vault identity key pinned at enrollment.
    pub fn identity(&self) -> Option<[u8; 32]> {
        self.identity_public_key
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
    }

    /// The highest version seen, as the vault signed it (if this profile has all of it).
    pub fn highest_signed(&self) -> Option<vettid_proto::enclave::SignedVersion> {
        let hex = |h: &Option<String>| h.as_deref().and_then(|h| hex::decode(h).ok());
        Some(vettid_proto::enclave::SignedVersion {
            version: self.highest_version,
            identity: hex(&self.identity_public_key)?,
            signature: hex(&self.highest_signature)?,
            change_hash: hex(&self.highest_change_hash)?,
        })
    }
}

impl Profile {
    /// Opens `dir`, creating it (mode 0700) if needed.
    pub fn open_or_create(dir: &Path) -> Result<Profile, ClientError> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| err(dir, e))?;
        }
        let lock_path = dir.join(".lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| err(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ClientError::Profile(format!(
                    "{} is in use by another app process; try again when it finishes",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(&lock_path, e)),
        }
        let path = dir.join("profile.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(err(&path, e)),
        };
        Ok(Profile {
            dir: dir.to_path_buf(),
            state,
            _lock: lock,
        })
    }

    /// Opens an enrolled profile.
    pub fn open_enrolled(dir: &Path) -> Result<Profile, ClientError> {
        if !dir.join("profile.json").exists() {
            return Err(ClientError::Profile(format!(
                "no profile at {} (run `vettid app --profile {} enroll …` first)",
                dir.display(),
                dir.display()
            )));
        }
        let p = Profile::open_or_create(dir)?;
        if !p.state.enrolled {
            return Err(ClientError::Profile(format!(
                "the profile at {} is not enrolled (enrollment did not finish)",
                dir.display()
            )));
        }
        Ok(p)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The member id, when known.
    pub fn member(&self) -> Result<&str, ClientError> {
        self.state
            .member_id
            .as_deref()
            .ok_or_else(|| ClientError::Profile("no member id yet".into()))
    }

    /// Saves the state atomically.
    pub fn save(&self) -> Result<(), ClientError> {
        let bytes = serde_json::to_vec_pretty(&self.state).expect("state always encodes");
        self.write("profile.json", &bytes, 0o644)
    }

    /// Writes `name` atomically with `mode`.
    fn write(&self, name: &str, bytes: &[u8], mode: u32) -> Result<(), ClientError> {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
        }
        let tmp = self.dir.join(format!(
            ".{}.{}.tmp",
            name.replace('/', "_"),
            hex::encode(vettid_crypto::random_array::<8>())
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| err(parent, e))?;
        Ok(())
    }

    /// Writes a secret file (0600).
    pub fn write_secret(&self, name: &str, bytes: &[u8]) -> Result<(), ClientError> {
        self.write(name, bytes, 0o600)
    }

    /// Writes a public file (0644).
    pub fn write_public(&self, name: &str, bytes: &[u8]) -> Result<(), ClientError> {
        self.write(name, bytes, 0o644)
    }

    /// Reads a file of the profile.
    pub fn read(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let path = self.dir.join(name);
        std::fs::read(&path)
            .map(Zeroizing::new)
            .map_err(|e| err(&path, e))
    }

    /// Reads a file of the profile if it exists.
    pub fn read_optional(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ClientError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&path, e)),
        }
    }

    /// Removes a file of the profile (absent is fine).
    pub fn remove(&self, name: &str) -> Result<(), ClientError> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&path, e)),
        }
    }

    fn hex_secret(&self, name: &str) -> Result<Option<SecretBytes<32>>, ClientError> {
        let path = self.dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let mut bytes = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut bytes[..])
                    .map_err(|_| err(&path, "not a 32-byte hex key"))?;
                Ok(Some(SecretBytes::from_array(*bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&path, e)),
        }
    }

    fn hex_secret_or_new(&self, name: &str) -> Result<SecretBytes<32>, ClientError> {
        if let Some(k) = self.hex_secret(name)? {
            return Ok(k);
        }
        let k = SecretBytes::random();
        self.write_secret(name, hex::encode(k.expose()).as_bytes())?;
        Ok(k)
    }

    /// The device's Ed25519 key (made on first use).
    pub fn device_key(&self) -> Result<SigningKey, ClientError> {
        Ok(SigningKey::from_seed(
            &self.hex_secret_or_new("device.key")?,
        ))
    }

    /// The device's static Noise key (made on first use).
    pub fn noise_key(&self) -> Result<SecretBytes<32>, ClientError> {
        self.hex_secret_or_new("noise.key")
    }

    /// The app's NATS user key (made on first use; the seed never leaves the profile).
    pub fn nats_key(&self) -> Result<nkeys::KeyPair, ClientError> {
        let path = self.dir.join("nats.seed");
        match std::fs::read_to_string(&path) {
            Ok(seed) => {
                let seed = Zeroizing::new(seed);
                nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| err(&path, e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kp = nkeys::KeyPair::new_user();
                let seed = Zeroizing::new(kp.seed().map_err(|e| err(&path, e))?);
                self.write_secret("nats.seed", seed.as_bytes())?;
                Ok(kp)
            }
            Err(e) => Err(err(&path, e)),
        }
    }

    /// Stores a JWT the API issued as `nats.creds` (with the app's own seed).
    pub fn store_jwt(&self, jwt: &str) -> Result<(), ClientError> {
        let kp = self.nats_key()?;
        let seed = Zeroizing::new(kp.seed().map_err(|e| ClientError::Profile(e.to_string()))?);
        let creds = Zeroizing::new(vettid_nats::creds_file(jwt, &seed));
        self.write_secret("nats.creds", creds.as_bytes())
    }

    /// The creds file text.
    pub fn creds(&self) -> Result<Zeroizing<String>, ClientError> {
        let bytes = self.read("nats.creds")?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| ClientError::Profile("nats.creds is not text".into()))
    }

    /// The key of the vault's events, once enrolled or unlocked.
    pub fn event_key(&self) -> Result<Option<SecretBytes<32>>, ClientError> {
        self.hex_secret("event.key")
    }

    /// Stores the key of the vault's events.
    pub fn store_event_key(&self, key: &[u8; 32]) -> Result<(), ClientError> {
        self.write_secret("event.key", hex::encode(key).as_bytes())
    }

    /// Pins a trust anchor set (attestation root PEM and manifest key hex).
    pub fn pin_trust(&self, root_pem: &str, manifest_key_hex: &str) -> Result<(), ClientError> {
        self.write_public("trust/root.pem", root_pem.as_bytes())?;
        self.write_public("trust/manifest.pub", manifest_key_hex.trim().as_bytes())
    }

    /// The pinned trust anchors.
    pub fn trust(&self) -> Result<crate::vault::Trust, ClientError> {
        let root = self.read("trust/root.pem")?;
        let key = self.read("trust/manifest.pub")?;
        crate::vault::Trust::from_pem_and_hex(
            std::str::from_utf8(&root).map_err(|_| ClientError::Profile("root.pem".into()))?,
            std::str::from_utf8(&key).map_err(|_| ClientError::Profile("manifest.pub".into()))?,
        )
    }
}
