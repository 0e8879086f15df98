//! `vettid attest …`: verify attestation documents, manage the dev root, measure enclave
//! binaries, and build and check signed PCR manifests.

use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vettid_attest::dev::{DevAttestor, DevRoot};
use vettid_attest::manifest::{Manifest, PcrSet};
use vettid_attest::{AttestRequest, Measurement, Policy, TrustedRoot};
use vettid_crypto::SecretBytes;
use vettid_crypto::sign::{SigningKey, VerifyingKey};

#[derive(clap::Subcommand)]
pub(crate) enum AttestCommand {
    /// Verify an attestation document (COSE_Sign1, Nitro format) against a pinned root.
    Verify(VerifyArgs),
    /// Print the dev root certificate (PEM) of a data directory, creating the root if needed.
    DevRoot {
        /// The data directory (as given to `vettid up`).
        #[arg(long, default_value = ".vettid")]
        data_dir: PathBuf,
    },
    /// Produce a dev attestation document for an enclave binary, signed under the data
    /// directory's dev root (for testing clients and operators' tooling).
    DevAttest(DevAttestArgs),
    /// Print the measurements (PCR0, PCR1, PCR2) of an enclave binary and its configuration.
    Measure(MeasureArgs),
    /// Signed PCR manifests: what the apps trust.
    #[command(subcommand)]
    Manifest(ManifestCommand),
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// The document (raw COSE bytes).
    #[arg(long)]
    doc: PathBuf,
    /// The root certificate to trust (PEM).
    #[arg(long)]
    root: PathBuf,
    /// Verify as of this time (Unix seconds). Default: now.
    #[arg(long)]
    at: Option<u64>,
    /// The nonce the document must carry (hex).
    #[arg(long, value_parser = parse_hex)]
    nonce: Option<Hex>,
    /// The public key the document must bind (hex).
    #[arg(long, value_parser = parse_hex)]
    public_key: Option<Hex>,
    /// An expected PCR, `INDEX=HEX` (repeatable).
    #[arg(long = "pcr", value_parser = parse_pcr)]
    pcrs: Vec<(u8, Vec<u8>)>,
    /// Accept debug-mode documents (PCR0 all zero).
    #[arg(long)]
    allow_debug: bool,
    /// Largest accepted age of the document's own timestamp, in seconds.
    #[arg(long, default_value_t = 300)]
    max_age: u64,
}

#[derive(clap::Args)]
pub(crate) struct MeasureArgs {
    /// The enclave binary.
    #[arg(long)]
    enclave: PathBuf,
    /// The enclave's configuration file (PCR2); none means empty.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(crate) struct DevAttestArgs {
    /// The data directory whose dev root signs.
    #[arg(long, default_value = ".vettid")]
    data_dir: PathBuf,
    #[command(flatten)]
    measure: MeasureArgs,
    /// Nonce to bind (hex).
    #[arg(long, value_parser = parse_hex)]
    nonce: Option<Hex>,
    /// Public key to bind (hex).
    #[arg(long, value_parser = parse_hex)]
    public_key: Option<Hex>,
    /// Where to write the document.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Subcommand)]
pub(crate) enum ManifestCommand {
    /// Create an Ed25519 manifest signing key (file mode 0600); prints its public key.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Add an enclave release to a manifest (new or existing) and sign it.
    Build(BuildArgs),
    /// Check a manifest's signature with a pinned public key, and optionally a measurement.
    Verify {
        /// The manifest (JSON).
        #[arg(long)]
        manifest: PathBuf,
        /// The pinned public key (hex).
        #[arg(long, value_parser = parse_hex)]
        key: Hex,
        /// An enclave binary whose measurement must be trusted now.
        #[arg(long)]
        enclave: Option<PathBuf>,
        /// Its configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// The signing key made by `manifest keygen`.
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    measure: MeasureArgs,
    /// A name for this release, e.g. 2026-11-28-v1.
    #[arg(long)]
    id: String,
    /// How long the release is trusted, from now.
    #[arg(long, default_value_t = 365)]
    valid_days: u64,
    /// An existing manifest to extend (its sets are kept; this release becomes current).
    #[arg(long)]
    add_to: Option<PathBuf>,
    /// The pinned public key of `--add-to` (hex); default: the signing key's own.
    #[arg(long, value_parser = parse_hex)]
    add_to_key: Option<Hex>,
    /// Where to write the signed manifest.
    #[arg(long)]
    out: PathBuf,
}

/// Bytes given as hex on the command line.
#[derive(Clone, Debug)]
pub(crate) struct Hex(Vec<u8>);

fn parse_hex(s: &str) -> Result<Hex, String> {
    hex::decode(s.trim())
        .map(Hex)
        .map_err(|e| format!("not hex: {e}"))
}

fn parse_pcr(s: &str) -> Result<(u8, Vec<u8>), String> {
    let (index, value) = s.split_once('=').ok_or("expected INDEX=HEX")?;
    let index: u8 = index.parse().map_err(|_| "PCR index must be 0-31")?;
    if index > 31 {
        return Err("PCR index must be 0-31".into());
    }
    let Hex(value) = parse_hex(value)?;
    if value.len() != 48 {
        return Err(format!(
            "PCR{index} must be 48 bytes (96 hex digits), got {}",
            value.len()
        ));
    }
    Ok((index, value))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub(crate) fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Verify(args) => verify(args),
        AttestCommand::DevRoot { data_dir } => {
            let root = load_or_create_dev_root(&data_dir)?;
            print!("{}", root.cert_pem());
            Ok(ExitCode::SUCCESS)
        }
        AttestCommand::DevAttest(args) => {
            let root = load_or_create_dev_root(&args.data_dir)?;
            let attestor = DevAttestor::new(&root, measure(&args.measure)?);
            let request = AttestRequest {
                nonce: args.nonce.map(|h| h.0),
                public_key: args.public_key.map(|h| h.0),
                user_data: None,
            };
            let doc = attestor.attest(&request, now())?;
            std::fs::write(&args.out, &doc)
                .with_context(|| format!("writing {}", args.out.display()))?;
            eprintln!("wrote {} ({} bytes)", args.out.display(), doc.len());
            Ok(ExitCode::SUCCESS)
        }
        AttestCommand::Measure(args) => {
            let m = measure(&args)?;
            println!("{}", serde_json::to_string_pretty(&measurement_json(&m))?);
            Ok(ExitCode::SUCCESS)
        }
        AttestCommand::Manifest(cmd) => manifest(cmd),
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let doc = read(&args.doc)?;
    let pem = std::fs::read_to_string(&args.root)
        .with_context(|| format!("reading {}", args.root.display()))?;
    let root = TrustedRoot::from_pem(&pem)
        .with_context(|| format!("{} is not a usable root certificate", args.root.display()))?;
    let mut policy = Policy::new(&root, args.at.unwrap_or_else(now));
    policy.max_age_secs = Some(args.max_age);
    policy.nonce = args.nonce.as_ref().map(|h| h.0.as_slice());
    policy.public_key = args.public_key.as_ref().map(|h| h.0.as_slice());
    policy.pcrs = &args.pcrs;
    policy.allow_debug = args.allow_debug;
    match vettid_attest::verify(&doc, &policy) {
        Ok(d) => {
            let pcrs: serde_json::Map<String, serde_json::Value> = d
                .pcrs
                .iter()
                .map(|(i, v)| (i.to_string(), hex::encode(v).into()))
                .collect();
            let mut out = serde_json::json!({
                "module_id": d.module_id,
                "timestamp": d.timestamp_ms,
                "pcrs": pcrs,
            });
            for (name, value) in [
                ("public_key", &d.public_key),
                ("user_data", &d.user_data),
                ("nonce", &d.nonce),
            ] {
                if let Some(v) = value {
                    out[name] = hex::encode(v).into();
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("invalid: {}: {e}", e.code());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn measure(args: &MeasureArgs) -> anyhow::Result<Measurement> {
    let binary = read(&args.enclave)?;
    let config = match &args.config {
        Some(p) => read(p)?,
        None => Vec::new(),
    };
    Ok(Measurement::of_enclave(&binary, &config))
}

fn measurement_json(m: &Measurement) -> serde_json::Value {
    serde_json::json!({ "pcr0": hex::encode(m.pcr0), "pcr1": hex::encode(m.pcr1), "pcr2": hex::encode(m.pcr2) })
}

/// Where a data directory keeps its dev attestation root. The key file is 0600: only the dev
/// attestor reads it, never the enclave or the host.
fn dev_root_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("dev-attestor");
    (dir.join("root.key"), dir.join("root.pem"))
}

pub(crate) fn load_or_create_dev_root(data_dir: &Path) -> anyhow::Result<DevRoot> {
    let (key_path, cert_path) = dev_root_paths(data_dir);
    if key_path.exists() || cert_path.exists() {
        let key = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let cert = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        return DevRoot::from_pem(&key, &cert)
            .with_context(|| format!("loading the dev root in {}", data_dir.display()));
    }
    let root = DevRoot::generate(now());
    let dir = key_path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_private(&key_path, root.key_pem().as_bytes())?;
    std::fs::write(&cert_path, root.cert_pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    eprintln!("created a dev attestation root in {}", dir.display());
    Ok(root)
}

/// Writes a new file readable only by its owner; refuses to overwrite.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()?;
    Ok(())
}

pub(crate) fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut seed[..])
        .with_context(|| format!("{} is not a manifest signing key", path.display()))?;
    Ok(SigningKey::from_seed(&SecretBytes::from_array(*seed)))
}

fn manifest(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::Keygen { out } => {
            let key = SigningKey::generate();
            write_private(&out, hex::encode(key.to_seed().expose()).as_bytes())?;
            eprintln!(
                "wrote manifest signing key {} (keep it offline)",
                out.display()
            );
            println!("{}", hex::encode(key.verifying_key().to_bytes()));
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Build(args) => {
            let key = load_signing_key(&args.key)?;
            let m = measure(&args.measure)?;
            let at = now();
            let mut manifest = match &args.add_to {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let pinned = match &args.add_to_key {
                        Some(k) => VerifyingKey::from_slice(&k.0)
                            .context("--add-to-key is not an Ed25519 public key")?,
                        None => key.verifying_key(),
                    };
                    Manifest::verify(&text, &pinned, 0)
                        .with_context(|| format!("{} does not verify", path.display()))?
                }
                None => Manifest {
                    serial: 0,
                    issued_at: at,
                    sets: Vec::new(),
                },
            };
            if manifest.sets.iter().any(|s| s.id == args.id) {
                bail!("the manifest already has a release named {:?}", args.id);
            }
            for s in &mut manifest.sets {
                s.current = false;
            }
            let until = at.saturating_add(args.valid_days.saturating_mul(86_400));
            manifest
                .sets
                .push(PcrSet::new(&args.id, &m, at, until, true));
            manifest.serial += 1;
            manifest.issued_at = at;
            let doc = manifest.sign(&key)?;
            std::fs::write(&args.out, &doc)
                .with_context(|| format!("writing {}", args.out.display()))?;
            eprintln!(
                "wrote {} (serial {}, {} release(s); {} is current)",
                args.out.display(),
                manifest.serial,
                manifest.sets.len(),
                args.id
            );
            println!("{}", serde_json::to_string_pretty(&measurement_json(&m))?);
            Ok(ExitCode::SUCCESS)
        }
        ManifestCommand::Verify {
            manifest,
            key,
            enclave,
            config,
        } => {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let key =
                VerifyingKey::from_slice(&key.0).context("--key is not an Ed25519 public key")?;
            let m = match Manifest::verify(&text, &key, 0) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("invalid: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            if let Some(enclave) = enclave {
                let measured = measure(&MeasureArgs { enclave, config })?;
                let pcrs = measured.as_pcrs().into_iter().collect();
                match m.trusts(&pcrs, now()) {
                    Ok(set) => eprintln!("trusted as release {:?}", set.id),
                    Err(e) => {
                        eprintln!("invalid: {e}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&m)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
