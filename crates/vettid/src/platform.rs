//! `vettid dev-platform`: what the Nitro hypervisor, the NSM and AWS KMS provide, played by
//! one local process that the host does not control.
//!
//! - **It launches the enclave** (as `nitro-cli run-enclave` has the hypervisor do): it reads
//!   the enclave image once, keeps it in a sealed in-memory file, and runs exactly those bytes,
//!   measured: PCR0 = SHA-384 of the image, PCR2 = SHA-384 of the **enclave configuration** it
//!   hands the enclave (guess limit, PIN stretching, quotas, the key service's TLS root). The
//!   host asks for a launch on `<data>/platform.sock` and may choose only resource settings.
//! - **It is the enclave's device**: configuration and attestation documents travel over the
//!   child's stdin/stdout, which only this process holds; the host is never asked and cannot
//!   ask. Documents are signed under the data directory's dev root (`dev-attestor/root.key`).
//! - **It is the key service**: the AWS KMS JSON API (`GenerateDataKey`, `Decrypt` with an
//!   attestation `Recipient`) over TLS on `<data>/kms.sock`, with a certificate under a dev
//!   key-service root made once per data directory (`dev-attestor/kms-root.pem`); that root is
//!   in the measured configuration, so the enclave accepts no other key service. The host
//!   relays the TLS bytes and reads nothing.
//!
//! Its trust is whoever can read `<data>/dev-attestor/`: development only. Production pins the
//! AWS root and runs on Nitro.

use crate::attest::load_or_create_dev_root;
use anyhow::Context;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use vettid_attest::dev::{DevAttestor, DevKms};
use vettid_attest::seal::kms::http;
use vettid_attest::{AttestRequest, Measurement};
use vettid_proto::channel::{Frame, Kind, from_body, to_body};
use vettid_proto::platform::{
    CONFIG_FORMAT, EnclaveConfig, FromDevice, FromPlatform, KeyServiceConfig, PolicyConfig,
    ToDevice, ToPlatform, check_tunables,
};

/// The TLS name of the dev key service.
pub(crate) const DEV_KMS_NAME: &str = "kms.vettid.dev";
/// The region named in the dev configuration (and checked in request signatures).
const DEV_REGION: &str = vettid_proto::platform::DEV_REGION;

#[derive(clap::Args)]
pub(crate) struct PlatformArgs {
    /// The data directory (dev roots and key-service secret live in `dev-attestor/`).
    #[arg(long, default_value = ".vettid")]
    data_dir: PathBuf,
    /// The enclave image to measure and launch (default: `vettid-enclave` beside this binary).
    #[arg(long)]
    enclave: Option<PathBuf>,
    /// Socket to serve launch requests on (default: `<data-dir>/platform.sock`).
    #[arg(long)]
    socket: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// The enclave policy, as measured into its configuration (PCR2).
#[derive(clap::Args, Clone)]
pub(crate) struct PolicyArgs {
    /// Wrong PINs (or passwords) in a row that lock a vault (1-10).
    #[arg(long, default_value_t = PolicyConfig::default().pin_attempts)]
    pin_attempts: u32,
    /// Argon2id memory for PINs, KiB.
    #[arg(long, default_value_t = PolicyConfig::default().argon2_memory_kib)]
    argon2_memory_kib: u32,
    /// Argon2id passes for PINs.
    #[arg(long, default_value_t = PolicyConfig::default().argon2_passes)]
    argon2_passes: u32,
    /// Database bytes per vault at most, MiB.
    #[arg(long, default_value_t = PolicyConfig::default().vault_quota_bytes >> 20)]
    vault_quota_mib: u64,
    /// Versions kept per secret item.
    #[arg(long, default_value_t = PolicyConfig::default().versions_per_item)]
    versions_per_item: u32,
    /// Feed and audit events kept per vault.
    #[arg(long, default_value_t = PolicyConfig::default().feed_rows)]
    feed_rows: u32,
    /// Staged recovery: seconds since an enrolled device last unlocked a vault before the
    /// enclave lets a new device take it over (match the API's `--recovery-delay-secs`).
    #[arg(long, default_value_t = PolicyConfig::default().recovery_delay_secs)]
    recovery_delay_secs: u64,
}

impl PolicyArgs {
    fn config(&self) -> PolicyConfig {
        PolicyConfig {
            pin_attempts: self.pin_attempts,
            argon2_memory_kib: self.argon2_memory_kib,
            argon2_passes: self.argon2_passes,
            argon2_lanes: 1,
            vault_quota_bytes: self.vault_quota_mib.saturating_mul(1 << 20),
            versions_per_item: self.versions_per_item,
            feed_rows: self.feed_rows,
            recovery_delay_secs: self.recovery_delay_secs,
        }
    }
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

fn kms_secret(dir: &Path) -> anyhow::Result<vettid_crypto::SecretBytes<32>> {
    let path = dir.join("dev-attestor/kms.secret");
    if let Ok(bytes) = std::fs::read(&path) {
        return vettid_crypto::SecretBytes::try_from_slice(&bytes)
            .context("dev key-service secret has the wrong length");
    }
    let secret = vettid_crypto::SecretBytes::<32>::random();
    crate::attest::write_private(&path, secret.expose())?;
    Ok(secret)
}

/// The dev key service's TLS identity: a root (what the enclave's configuration pins) and a
/// server certificate for [`DEV_KMS_NAME`] under it, made once per data directory.
pub(crate) struct KmsIdentity {
    /// The root certificate (PEM).
    pub(crate) root_pem: String,
    server_pem: String,
    server_key_pem: zeroize::Zeroizing<String>,
}

pub(crate) fn kms_identity(dir: &Path) -> anyhow::Result<KmsIdentity> {
    let d = dir.join("dev-attestor");
    let (root, server, key) = (
        d.join("kms-root.pem"),
        d.join("kms-server.pem"),
        d.join("kms-server.key"),
    );
    if key.exists() {
        return Ok(KmsIdentity {
            root_pem: std::fs::read_to_string(&root)?,
            server_pem: std::fs::read_to_string(&server)?,
            server_key_pem: zeroize::Zeroizing::new(std::fs::read_to_string(&key)?),
        });
    }
    std::fs::create_dir_all(&d)?;
    let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "VettID dev key-service root");
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    root_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    root_params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let root_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let issuer = rcgen::CertifiedIssuer::self_signed(root_params, root_key)?;
    let mut server_params = rcgen::CertificateParams::new(vec![DEV_KMS_NAME.to_owned()])?;
    server_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEV_KMS_NAME);
    server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server_params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let server_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;
    let identity = KmsIdentity {
        root_pem: issuer.pem(),
        server_pem: server_cert.pem(),
        server_key_pem: zeroize::Zeroizing::new(server_key.serialize_pem()),
    };
    // The root's key is not kept: nothing else is ever issued under it.
    crate::attest::write_private(&key, identity.server_key_pem.as_bytes())?;
    std::fs::write(&server, &identity.server_pem)?;
    std::fs::write(&root, &identity.root_pem)?;
    Ok(identity)
}

/// The enclave configuration this platform measures and hands its enclaves.
pub(crate) fn dev_config(policy: PolicyConfig, kms_root_pem: &str) -> EnclaveConfig {
    EnclaveConfig {
        format: CONFIG_FORMAT,
        policy,
        key_service: KeyServiceConfig {
            server_name: DEV_KMS_NAME.into(),
            roots_pem: kms_root_pem.into(),
            key_id: "vettid-dev".into(),
            region: DEV_REGION.into(),
        },
    }
}

/// The enclave image, read once into a sealed in-memory file: what is measured is what runs.
struct Image {
    file: std::os::fd::OwnedFd,
}

impl Image {
    fn load(path: &Path) -> anyhow::Result<(Image, Vec<u8>)> {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        use nix::sys::memfd::{MFdFlags, memfd_create};
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // Not close-on-exec: a launched process execs it through /proc/self/fd.
        let fd =
            memfd_create("vettid-enclave", MFdFlags::MFD_ALLOW_SEALING).context("memfd_create")?;
        let mut file = std::fs::File::from(fd);
        file.write_all(&bytes)?;
        let seals = SealFlag::F_SEAL_WRITE
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_SEAL;
        // The kernel refuses F_SEAL_WRITE with EBUSY while any page of the file is pinned,
        // which page migration under memory pressure does for a moment: try again, briefly.
        let mut tries = 0;
        loop {
            match fcntl(&file, FcntlArg::F_ADD_SEALS(seals)) {
                Err(nix::errno::Errno::EBUSY) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => {
                    other.context("sealing the enclave image")?;
                    break;
                }
            }
        }
        Ok((Image { file: file.into() }, bytes))
    }

    fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.file.as_raw_fd())
    }
}

struct Platform {
    image: Image,
    config: Vec<u8>,
    attestor: DevAttestor,
    /// Enclaves launched, by the host socket they serve.
    children: Mutex<HashMap<String, Child>>,
    /// Launch requests, for the one thread that starts enclaves: PR_SET_PDEATHSIG fires when
    /// the *thread* that forked exits, so it must be one that lives as long as the platform.
    launches: Mutex<std::sync::mpsc::Sender<Launch>>,
}

type Launch = (String, Vec<String>, std::sync::mpsc::Sender<FromPlatform>);

impl Platform {
    fn launch(self: &Arc<Self>, socket: String, tunables: Vec<String>) -> FromPlatform {
        if let Err(e) = check_tunables(&tunables) {
            return FromPlatform::Refused(e);
        }
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut old) = children.remove(&socket) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let mut cmd = std::process::Command::new(self.image.path());
        std::os::unix::process::CommandExt::arg0(&mut cmd, "vettid-enclave");
        cmd.arg("--socket")
            .arg(&socket)
            .args(&tunables)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        crate::up::child::die_with_parent(&mut cmd, nix::sys::signal::Signal::SIGKILL);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return FromPlatform::Refused(format!("cannot start the enclave: {e}")),
        };
        let pid = child.id();
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            return FromPlatform::Refused("the enclave has no device channel".into());
        };
        let this = self.clone();
        std::thread::spawn(move || this.serve_device(BufReader::new(from), to));
        children.insert(socket, child);
        FromPlatform::Launched { pid }
    }

    /// Answers one enclave's device requests until it exits.
    fn serve_device(
        &self,
        mut from: BufReader<std::process::ChildStdout>,
        mut to: std::process::ChildStdin,
    ) {
        while let Ok(frame) = Frame::read_from(&mut from) {
            if frame.kind != Kind::Request {
                continue;
            }
            let answer = match from_body::<ToDevice>(&frame.body) {
                Ok(ToDevice::Config) => FromDevice::Config(self.config.clone()),
                Ok(ToDevice::Attest {
                    nonce,
                    public_key,
                    user_data,
                }) => match self.attestor.attest(
                    &AttestRequest {
                        nonce,
                        public_key,
                        user_data,
                    },
                    now(),
                ) {
                    Ok(doc) => FromDevice::Document(doc),
                    Err(e) => FromDevice::Refused(e.to_string()),
                },
                Err(_) => FromDevice::Refused("malformed device request".into()),
            };
            let reply = Frame {
                kind: Kind::Response,
                id: frame.id,
                body: to_body(&answer),
            };
            if reply.write_to(&mut to).is_err() {
                return;
            }
        }
    }

    fn stop_all(&self) {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for (_, mut c) in children.drain() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Serves launch requests on one connection from a host.
fn serve_host(platform: &Arc<Platform>, stream: UnixStream) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let (mut reader, mut writer) = (BufReader::new(stream), writer);
    while let Ok(frame) = Frame::read_limited(&mut reader, 64 * 1024) {
        if frame.kind != Kind::Request {
            continue;
        }
        let answer = match from_body::<ToPlatform>(&frame.body) {
            Ok(ToPlatform::Launch { socket, tunables }) => {
                let (tx, rx) = std::sync::mpsc::channel();
                let sent = platform
                    .launches
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .send((socket, tunables, tx));
                match sent.ok().and_then(|()| rx.recv().ok()) {
                    Some(answer) => answer,
                    None => FromPlatform::Refused("the platform is stopping".into()),
                }
            }
            // Attestation and keys are the enclave's business, over its own channels: a host
            // asking for a document or a key gets nothing.
            Err(_) => FromPlatform::Refused("not a platform request".into()),
        };
        let reply = Frame {
            kind: Kind::Response,
            id: frame.id,
            body: to_body(&answer),
        };
        if reply.write_to(&mut writer).is_err() {
            return;
        }
    }
}

/// The dev key service: one KMS request per TLS connection.
fn serve_kms(kms: &DevKms, tls: Arc<rustls::ServerConfig>, stream: UnixStream) {
    let Ok(connection) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let (status, body) = match http::read_request(&mut BufReader::new(&mut tls)) {
        Ok(req) if req.method == "POST" && req.path == "/" => kms.answer(&req, DEV_REGION),
        Ok(_) => (404, b"{\"__type\":\"UnknownOperationException\"}".to_vec()),
        Err(_) => return,
    };
    let _ = http::write_response(&mut tls, status, "application/x-amz-json-1.1", &body);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn kms_tls(identity: &KmsIdentity) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = vec![
        CertificateDer::from_pem_slice(identity.server_pem.as_bytes())?,
        CertificateDer::from_pem_slice(identity.root_pem.as_bytes())?,
    ];
    let key = PrivateKeyDer::from_pem_slice(identity.server_key_pem.as_bytes())?;
    Ok(rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?)
}

fn listen(path: &Path) -> anyhow::Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

pub(crate) fn run(args: PlatformArgs) -> anyhow::Result<ExitCode> {
    // Signal handlers first: a SIGTERM during start-up must still stop the enclaves.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let terminated = {
        let _in = rt.enter();
        crate::up::signals::terminated()
    };
    let enclave = enclave_binary(args.enclave)?;
    let (image, bytes) = Image::load(&enclave)?;
    let root = load_or_create_dev_root(&args.data_dir)?;
    let identity = kms_identity(&args.data_dir)?;
    let config = dev_config(args.policy.config(), &identity.root_pem);
    EnclaveConfig::parse(&config.to_document()).context("the enclave policy")?;
    let document = config.to_document();
    let measurement = Measurement::of_enclave(&bytes, &document);
    drop(bytes);
    let manifest = ensure_dev_manifest(&args.data_dir, &measurement)?;
    std::fs::write(
        args.data_dir.join("manifest/enclave-config.json"),
        &document,
    )?;
    let (launches, requests) = std::sync::mpsc::channel::<Launch>();
    let platform = Arc::new(Platform {
        image,
        config: document,
        attestor: DevAttestor::new(&root, measurement.clone()),
        children: Mutex::new(HashMap::new()),
        launches: Mutex::new(launches),
    });
    {
        let platform = platform.clone();
        std::thread::spawn(move || {
            for (socket, tunables, reply) in requests {
                let _ = reply.send(platform.launch(socket, tunables));
            }
        });
    }
    let kms = Arc::new(DevKms::new(
        kms_secret(&args.data_dir)?,
        root.trusted(),
        now,
    ));
    let tls = Arc::new(kms_tls(&identity)?);

    let hosts = listen(
        &args
            .socket
            .unwrap_or_else(|| args.data_dir.join("platform.sock")),
    )?;
    let keys = listen(&args.data_dir.join("kms.sock"))?;
    {
        let platform = platform.clone();
        std::thread::spawn(move || {
            for stream in hosts.incoming().map_while(Result::ok) {
                let platform = platform.clone();
                std::thread::spawn(move || serve_host(&platform, stream));
            }
        });
    }
    std::thread::spawn(move || {
        for stream in keys.incoming().map_while(Result::ok) {
            let (kms, tls) = (kms.clone(), tls.clone());
            std::thread::spawn(move || serve_kms(&kms, tls, stream));
        }
    });
    println!(
        "dev platform: enclave {} pcr0 {} pcr2 {}",
        enclave.display(),
        hex::encode(measurement.pcr0),
        hex::encode(measurement.pcr2)
    );
    println!("dev platform: PCR manifest {}", manifest.display());
    println!("ready");
    rt.block_on(terminated);
    platform.stop_all();
    Ok(ExitCode::SUCCESS)
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

pub(crate) fn manifest_paths(data_dir: &Path) -> ManifestPaths {
    let dir = data_dir.join("manifest");
    ManifestPaths {
        key: dir.join("signing.key"),
        public: dir.join("signing.pub"),
        manifest: dir.join("pcr-manifest.json"),
    }
}

/// Makes sure the data directory's signed PCR manifest trusts `measurement` now: creates the
/// signing key once, and adds a release (serial + 1, the new one current) when the enclave
/// image or its configuration changed. Returns the manifest's path.
fn ensure_dev_manifest(data_dir: &Path, measurement: &Measurement) -> anyhow::Result<PathBuf> {
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
    let id = format!(
        "dev-{}-{}",
        &hex::encode(measurement.pcr0)[..12],
        &hex::encode(measurement.pcr2)[..8]
    );
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
