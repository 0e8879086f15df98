//! `vettid dev-platform`: what the Nitro hypervisor and AWS KMS provide, played locally.
//!
//! It measures the enclave binary itself (PCR0 = SHA-384 of the file), signs attestation
//! documents under the data directory's dev root (`dev-attestor/root.key`, which only this
//! process reads), and runs the dev key service with a root secret in
//! `dev-attestor/kms.secret`. The host relays the enclave's requests here and reads nothing.

use crate::attest::load_or_create_dev_root;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use vettid_attest::dev::{DevAttestor, DevKms};
use vettid_attest::seal::KeyService;
use vettid_attest::{AttestRequest, Measurement};
use vettid_host::frames::{read_frame, write_frame};
use vettid_proto::channel::{Frame, Kind, from_body, to_body};
use vettid_proto::enclave::{HostReply, ToHost};

#[derive(clap::Args)]
pub(crate) struct PlatformArgs {
    /// The data directory (dev root and key-service secret live in `dev-attestor/`).
    #[arg(long, default_value = ".vettid")]
    data_dir: PathBuf,
    /// The enclave binary to measure (default: `vettid-enclave` beside this binary).
    #[arg(long)]
    enclave: Option<PathBuf>,
    /// Socket to serve (default: `<data-dir>/platform.sock`).
    #[arg(long)]
    socket: Option<PathBuf>,
}

pub(crate) fn enclave_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating the vettid binary")?;
    let sibling = exe.with_file_name("vettid-enclave");
    anyhow::ensure!(
        sibling.is_file(),
        "no enclave binary at {} (build it with `cargo build -p vettid-enclave`, or pass --enclave)",
        sibling.display()
    );
    Ok(sibling)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn kms_secret(dir: &std::path::Path) -> anyhow::Result<vettid_crypto::SecretBytes<32>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("dev-attestor/kms.secret");
    if let Ok(bytes) = std::fs::read(&path) {
        return vettid_crypto::SecretBytes::try_from_slice(&bytes)
            .context("dev key-service secret has the wrong length");
    }
    let secret = vettid_crypto::SecretBytes::<32>::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(secret.expose())?;
    f.sync_all()?;
    Ok(secret)
}

pub(crate) fn run(args: PlatformArgs) -> anyhow::Result<ExitCode> {
    let enclave = enclave_binary(args.enclave)?;
    let binary =
        std::fs::read(&enclave).with_context(|| format!("reading {}", enclave.display()))?;
    let measurement = Measurement::of_enclave(&binary, b"");
    let root = load_or_create_dev_root(&args.data_dir)?;
    let manifest = ensure_dev_manifest(&args.data_dir, &measurement)?;
    let attestor = Arc::new(DevAttestor::new(&root, measurement.clone()));
    let kms = Arc::new(DevKms::new(
        kms_secret(&args.data_dir)?,
        root.trusted(),
        now,
    ));
    let socket = args
        .socket
        .unwrap_or_else(|| args.data_dir.join("platform.sock"));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("binding {}", socket.display()))?;
        println!(
            "dev platform: enclave {} pcr0 {}",
            enclave.display(),
            hex::encode(measurement.pcr0)
        );
        println!("dev platform: PCR manifest {}", manifest.display());
        println!("ready");
        let terminated = crate::up::signals::terminated();
        tokio::pin!(terminated);
        loop {
            let (mut stream, _) = tokio::select! {
                a = listener.accept() => a?,
                _ = &mut terminated => return Ok(ExitCode::SUCCESS),
            };
            let (attestor, kms) = (attestor.clone(), kms.clone());
            tokio::spawn(async move {
                while let Ok(Frame {
                    kind: Kind::Request,
                    id,
                    body,
                }) = read_frame(&mut stream).await
                {
                    let (attestor, kms) = (attestor.clone(), kms.clone());
                    let reply = tokio::task::spawn_blocking(move || answer(&attestor, &kms, &body))
                        .await
                        .unwrap_or_else(|e| HostReply::Error(e.to_string()));
                    let frame = Frame {
                        kind: Kind::Response,
                        id,
                        body: to_body(&reply),
                    };
                    if write_frame(&mut stream, &frame).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// Where a data directory keeps its dev PCR manifest and the key that signs it.
pub(crate) struct ManifestPaths {
    /// Ed25519 seed (hex), 0600.
    pub(crate) key: PathBuf,
    /// Its public key (hex): what apps pin.
    pub(crate) public: PathBuf,
    /// The signed manifest the API serves.
    pub(crate) manifest: PathBuf,
}

pub(crate) fn manifest_paths(data_dir: &std::path::Path) -> ManifestPaths {
    let dir = data_dir.join("manifest");
    ManifestPaths {
        key: dir.join("signing.key"),
        public: dir.join("signing.pub"),
        manifest: dir.join("pcr-manifest.json"),
    }
}

/// Makes sure the data directory's signed PCR manifest trusts `measurement` now: creates the
/// signing key once, and adds a release (serial + 1, the new one current) when the enclave
/// binary changed. Returns the manifest's path.
fn ensure_dev_manifest(
    data_dir: &std::path::Path,
    measurement: &Measurement,
) -> anyhow::Result<PathBuf> {
    use vettid_attest::manifest::{Manifest, PcrSet};
    let paths = manifest_paths(data_dir);
    std::fs::create_dir_all(paths.key.parent().expect("has a parent"))?;
    if !paths.key.exists() {
        let key = vettid_crypto::sign::SigningKey::generate();
        crate::attest::write_private(&paths.key, hex::encode(key.to_seed().expose()).as_bytes())?;
    }
    let key = crate::attest::load_signing_key(&paths.key)?;
    std::fs::write(&paths.public, hex::encode(key.verifying_key().to_bytes()))
        .with_context(|| format!("writing {}", paths.public.display()))?;
    let at = now();
    let pcrs = measurement.as_pcrs().into_iter().collect();
    let existing = std::fs::read_to_string(&paths.manifest)
        .ok()
        .and_then(|text| Manifest::verify(&text, &key.verifying_key(), 0).ok());
    if let Some(m) = &existing
        && m.trusts(&pcrs, at).is_ok()
    {
        return Ok(paths.manifest);
    }
    let mut manifest = existing.unwrap_or(Manifest {
        serial: 0,
        issued_at: at,
        sets: Vec::new(),
    });
    for set in &mut manifest.sets {
        set.current = false;
    }
    let id = format!("dev-{}", &hex::encode(measurement.pcr0)[..12]);
    manifest.sets.retain(|s| s.id != id);
    // Keep the newest releases only (the manifest holds a bounded number).
    let keep = manifest.sets.len().saturating_sub(15);
    manifest.sets.drain(..keep);
    manifest.sets.push(PcrSet::new(
        &id,
        measurement,
        at.saturating_sub(3600),
        at + 365 * 24 * 3600,
        true,
    ));
    manifest.serial += 1;
    manifest.issued_at = at;
    let doc = manifest.sign(&key)?;
    let tmp = paths.manifest.with_extension("json.tmp");
    std::fs::write(&tmp, doc).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &paths.manifest)?;
    Ok(paths.manifest)
}

fn answer(attestor: &DevAttestor, kms: &DevKms, body: &[u8]) -> HostReply {
    let err = |e: &dyn std::fmt::Display| HostReply::Error(e.to_string());
    match from_body::<ToHost>(body) {
        Ok(ToHost::Attest {
            nonce,
            public_key,
            user_data,
        }) => {
            match attestor.attest(
                &AttestRequest {
                    nonce,
                    public_key,
                    user_data,
                },
                now(),
            ) {
                Ok(doc) => HostReply::Bytes(doc),
                Err(e) => err(&e),
            }
        }
        Ok(ToHost::GenerateDataKey { doc }) => match kms.generate_data_key(&doc) {
            Ok(k) => HostReply::DataKey {
                blob: k.ciphertext_blob,
                for_recipient: k.ciphertext_for_recipient,
            },
            Err(e) => err(&e),
        },
        Ok(ToHost::Decrypt { blob, doc }) => match kms.decrypt(&blob, &doc) {
            Ok(cms) => HostReply::Bytes(cms),
            Err(e) => err(&e),
        },
        Ok(_) => err(&"not a platform request"),
        Err(_) => err(&"malformed request"),
    }
}
