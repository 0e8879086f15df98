//! What the platform gives an enclave: its **measured configuration** and its **attestation
//! documents**, over a channel the host never sees; and how a host asks the platform to launch
//! one.
//!
//! ```text
//! host ──ToPlatform::Launch──► platform (dev: `vettid dev-platform`; Nitro: the hypervisor)
//!                                 │ launches the image it measured, with the configuration it
//!                                 │ measured (PCR0 = image, PCR2 = configuration)
//!                                 ▼
//!                               enclave ◄──ToDevice / FromDevice (dev: the child's stdin and
//!                                           stdout; Nitro: /dev/nsm and the EIF's files)
//! ```
//!
//! The configuration decides what must not be the host's to choose — the guess limit, the PIN
//! stretching, the per-vault quotas, and whom the enclave trusts as its key service — so a
//! weakened one shows in the measurement apps and the key service check.

use serde::{Deserialize, Serialize};

/// The configuration format this code reads.
pub const CONFIG_FORMAT: u32 = 1;
/// Largest configuration document.
pub const MAX_CONFIG: usize = 64 * 1024;

/// The enclave's measured configuration (JSON; its SHA-384 is PCR2 in development).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveConfig {
    /// [`CONFIG_FORMAT`].
    pub format: u32,
    /// Guess limit, stretching and quotas.
    pub policy: PolicyConfig,
    /// The key service the enclave seals with, reached over TLS through the host.
    pub key_service: KeyServiceConfig,
}

/// The policy part of [`EnclaveConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Wrong PINs (and passwords) in a row before a vault locks: 1–10.
    pub pin_attempts: u32,
    /// Argon2id memory for PINs, KiB (19 MiB – 256 MiB).
    pub argon2_memory_kib: u32,
    /// Argon2id passes (2–10).
    pub argon2_passes: u32,
    /// Argon2id lanes (1–4).
    pub argon2_lanes: u32,
    /// Bytes of database per vault at most (1 MiB – 1 GiB).
    pub vault_quota_bytes: u64,
    /// Versions kept per secret item (1–1000).
    pub versions_per_item: u32,
    /// Feed and audit events kept per vault (100 – 1,000,000).
    pub feed_rows: u32,
    /// Staged recovery: the enclave refuses to re-key a vault to a new device while an
    /// enrolled device has unlocked it within this many seconds (0 – 30 days; 0 leaves the
    /// delay to the API alone). Match the API's recovery delay.
    #[serde(default = "default_recovery_delay")]
    pub recovery_delay_secs: u64,
}

/// The recovery delay when a configuration names none: 24 hours.
pub const DEFAULT_RECOVERY_DELAY_SECS: u64 = 24 * 3600;
/// The longest recovery delay a configuration may set.
pub const MAX_RECOVERY_DELAY_SECS: u64 = 30 * 24 * 3600;

fn default_recovery_delay() -> u64 {
    DEFAULT_RECOVERY_DELAY_SECS
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            pin_attempts: 10,
            argon2_memory_kib: 64 * 1024,
            argon2_passes: 3,
            argon2_lanes: 1,
            vault_quota_bytes: 64 << 20,
            versions_per_item: 32,
            feed_rows: 10_000,
            recovery_delay_secs: DEFAULT_RECOVERY_DELAY_SECS,
        }
    }
}

/// The region name of the development key service (any key id is accepted there).
pub const DEV_REGION: &str = "dev";

/// Whether `id` is `arn:aws:kms:<region>:<12-digit account>:key/<key id>`.
pub fn is_key_arn(id: &str, region: &str) -> bool {
    let mut parts = id.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("kms"), Some(r), Some(account), Some(key)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && r == region
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && key.strip_prefix("key/").is_some_and(|k| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The key service part of [`EnclaveConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyServiceConfig {
    /// The TLS server name the key service must prove (`kms.<region>.amazonaws.com` on AWS).
    pub server_name: String,
    /// The roots its certificate must chain to (PEM certificates).
    pub roots_pem: String,
    /// The key to generate data keys under (a KMS key id or ARN).
    pub key_id: String,
    /// The region named in request signatures.
    pub region: String,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not a configuration document of this format.
    #[error("enclave configuration does not parse: {0}")]
    Malformed(String),
    /// A value is outside what this enclave accepts.
    #[error("enclave configuration: {0} is out of range")]
    OutOfRange(&'static str),
}

impl EnclaveConfig {
    /// Parses and checks a configuration document: strict JSON, every value within bounds.
    pub fn parse(bytes: &[u8]) -> Result<EnclaveConfig, ConfigError> {
        if bytes.len() > MAX_CONFIG {
            return Err(ConfigError::OutOfRange("document size"));
        }
        let config: EnclaveConfig =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Malformed(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let range = |ok: bool, what| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange(what))
            }
        };
        let p = &self.policy;
        range(self.format == CONFIG_FORMAT, "format")?;
        range((1..=10).contains(&p.pin_attempts), "pin_attempts")?;
        range(
            (19 * 1024..=256 * 1024).contains(&p.argon2_memory_kib),
            "argon2_memory_kib",
        )?;
        range((2..=10).contains(&p.argon2_passes), "argon2_passes")?;
        range((1..=4).contains(&p.argon2_lanes), "argon2_lanes")?;
        range(
            (1 << 20..=1 << 30).contains(&p.vault_quota_bytes),
            "vault_quota_bytes",
        )?;
        range(
            (1..=1000).contains(&p.versions_per_item),
            "versions_per_item",
        )?;
        range((100..=1_000_000).contains(&p.feed_rows), "feed_rows")?;
        range(
            p.recovery_delay_secs <= MAX_RECOVERY_DELAY_SECS,
            "recovery_delay_secs",
        )?;
        let k = &self.key_service;
        range(
            (1..=253).contains(&k.server_name.len()),
            "key_service.server_name",
        )?;
        range(
            (1..=MAX_CONFIG).contains(&k.roots_pem.len()),
            "key_service.roots_pem",
        )?;
        range((1..=2048).contains(&k.key_id.len()), "key_service.key_id")?;
        range(
            (1..=64).contains(&k.region.len())
                && k.region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "key_service.region",
        )?;
        // On AWS the key is named by its full ARN in the configured region: an alias or a
        // bare id would let whoever supplies the request's credentials (the host) resolve it
        // in an account of its own, under a key policy of its own.
        range(
            k.region == DEV_REGION || is_key_arn(&k.key_id, &k.region),
            "key_service.key_id (a key ARN in the configured region)",
        )?;
        Ok(())
    }

    /// The document as the platform measures it (pretty JSON, one trailing newline).
    pub fn to_document(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a configuration encodes");
        out.push(b'\n');
        out
    }
}

/// Enclave → its device (dev: the platform over the enclave's stdin/stdout; Nitro: the NSM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToDevice {
    /// The measured configuration this enclave was launched with.
    Config,
    /// An attestation document binding these (each optional, as on Nitro).
    Attest {
        /// A verifier's nonce.
        #[serde(with = "serde_bytes")]
        nonce: Option<Vec<u8>>,
        /// A public key of the enclave's.
        #[serde(with = "serde_bytes")]
        public_key: Option<Vec<u8>>,
        /// Application data.
        #[serde(with = "serde_bytes")]
        user_data: Option<Vec<u8>>,
    },
}

/// Device → enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromDevice {
    /// The configuration document.
    Config(#[serde(with = "serde_bytes")] Vec<u8>),
    /// An attestation document.
    Document(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The device could not do it.
    Refused(String),
}

/// Host → platform (`<data>/platform.sock` in development).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToPlatform {
    /// Launch the measured enclave image, connecting to the host's channel `socket`, with
    /// resource `tunables` (`--max-resident N`, `--memory-budget-mib N`, `--idle-secs N`,
    /// `--rest-secs N`, `--snapshot-every N`; nothing else). An enclave launched earlier for the same socket is
    /// stopped first.
    Launch {
        /// The host's channel socket.
        socket: String,
        /// Resource flags for the enclave.
        tunables: Vec<String>,
    },
}

/// Platform → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromPlatform {
    /// Launched: the process id.
    Launched {
        /// The enclave's process id.
        pid: u32,
    },
    /// Not launched, and why.
    Refused(String),
}

/// The resource flags a host may pass to an enclave (each takes a number).
pub const TUNABLES: &[&str] = &[
    "--max-resident",
    "--memory-budget-mib",
    "--idle-secs",
    "--rest-secs",
    "--snapshot-every",
];

/// Checks that `tunables` are only [`TUNABLES`] flags, each with a number.
pub fn check_tunables(tunables: &[String]) -> Result<(), String> {
    let mut it = tunables.iter();
    while let Some(flag) = it.next() {
        if !TUNABLES.contains(&flag.as_str()) {
            return Err(format!(
                "{flag} is not a resource setting the host may choose"
            ));
        }
        match it.next() {
            Some(v) if v.parse::<u64>().is_ok() => {}
            _ => return Err(format!("{flag} needs a number")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EnclaveConfig {
        EnclaveConfig {
            format: CONFIG_FORMAT,
            policy: PolicyConfig::default(),
            key_service: KeyServiceConfig {
                server_name: "kms.dev.vettid".into(),
                roots_pem: "-----BEGIN CERTIFICATE-----".into(),
                key_id: "dev".into(),
                region: "dev".into(),
            },
        }
    }

    #[test]
    fn a_configuration_round_trips_and_out_of_range_values_are_refused() {
        let c = config();
        assert_eq!(EnclaveConfig::parse(&c.to_document()).unwrap(), c);
        for (change, what) in [
            (
                (|c: &mut EnclaveConfig| c.policy.pin_attempts = 11) as fn(&mut _),
                "pin_attempts",
            ),
            (|c| c.policy.pin_attempts = 0, "pin_attempts"),
            (|c| c.policy.argon2_memory_kib = 1024, "argon2_memory_kib"),
            (|c| c.policy.argon2_passes = 1, "argon2_passes"),
            (
                |c| c.policy.vault_quota_bytes = 1 << 40,
                "vault_quota_bytes",
            ),
            (|c| c.format = 2, "format"),
            (
                |c| c.policy.recovery_delay_secs = MAX_RECOVERY_DELAY_SECS + 1,
                "recovery_delay_secs",
            ),
            (
                |c| c.key_service.server_name.clear(),
                "key_service.server_name",
            ),
        ] {
            let mut bad = config();
            change(&mut bad);
            assert_eq!(
                EnclaveConfig::parse(&bad.to_document()),
                Err(ConfigError::OutOfRange(what))
            );
        }
        let text = String::from_utf8(c.to_document()).unwrap();
        let extra = text.replacen("\"format\"", "\"extra\": 1, \"format\"", 1);
        assert!(matches!(
            EnclaveConfig::parse(extra.as_bytes()),
            Err(ConfigError::Malformed(_))
        ));
        assert!(matches!(
            EnclaveConfig::parse(b"not json"),
            Err(ConfigError::Malformed(_))
        ));
    }

    #[test]
    fn on_aws_the_key_is_a_full_arn_in_the_configured_region() {
        let arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(is_key_arn(arn, "eu-west-1"));
        for bad in [
            "alias/vettid",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-west-1:123456789012:alias/vettid",
            "arn:aws:kms:us-east-1:123456789012:key/1234abcd",
            "arn:aws:kms:eu-west-1:12345:key/1234abcd",
            "arn:aws:s3:eu-west-1:123456789012:key/1234abcd",
        ] {
            assert!(!is_key_arn(bad, "eu-west-1"), "{bad}");
        }
        let mut c = config();
        c.key_service.region = "eu-west-1".into();
        c.key_service.key_id = "alias/vettid".into();
        assert!(matches!(
            EnclaveConfig::parse(&c.to_document()),
            Err(ConfigError::OutOfRange(_))
        ));
        c.key_service.key_id = arn.into();
        assert!(EnclaveConfig::parse(&c.to_document()).is_ok());
    }

    #[test]
    fn only_resource_settings_pass_as_tunables() {
        let ok: Vec<String> = ["--idle-secs", "0", "--max-resident", "2"]
            .map(String::from)
            .to_vec();
        assert!(check_tunables(&ok).is_ok());
        for bad in [
            &["--pin-attempts", "1000"][..],
            &["--argon2-memory-kib", "8"],
            &["--idle-secs"],
            &["--idle-secs", "x"],
        ] {
            let bad: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(check_tunables(&bad).is_err(), "{bad:?}");
        }
    }
}
