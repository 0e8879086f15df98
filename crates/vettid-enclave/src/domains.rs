//! The registry of vault domains: the one list the storage engine's schema comes from.
//!
//! A domain is one module (`secrets`, `profile`, `feed`, `backup`; `credential` and `devices`
//! keep their rows in the engine's `meta` table) holding its tables as append-only
//! [`Migration`]s, its handler and its tests. Its handler takes the [`crate::manager::UnlockedVault`] guard, which only the
//! manager makes after checking the session's proof of unlock: a domain cannot reach a vault
//! any other way. `docs/ARCHITECTURE.md` ("How to add a vault domain") says what a new one
//! touches.

use crate::vault::{Migration, Schema};
use std::sync::OnceLock;

/// One domain's name and migrations.
#[derive(Debug, Clone, Copy)]
pub struct Domain {
    /// Its name (for messages and tests; table names are the domain's own choice).
    pub name: &'static str,
    /// Its migrations, in the order they were added.
    pub migrations: &'static [Migration],
    /// The tables a restore of the member's exported backup carries into another vault (the
    /// member's data; not what belongs to the vault that made the backup or records this
    /// one's history: keys, devices, credential, backups, the feed and audit chain, the
    /// signed public profile).
    pub restored: &'static [&'static str],
}

/// Every table a restore carries over, in registry order.
pub fn restored_tables() -> Vec<&'static str> {
    REGISTRY
        .iter()
        .flat_map(|d| d.restored.iter().copied())
        .collect()
}

/// Every domain whose tables a vault holds, the engine's own first.
pub const REGISTRY: &[Domain] = &[
    Domain {
        name: "vault",
        migrations: crate::vault::MIGRATIONS,
        restored: &[],
    },
    Domain {
        name: "secrets",
        migrations: crate::secrets::MIGRATIONS,
        restored: &["secret_items", "secret_versions"],
    },
    Domain {
        name: "profile",
        migrations: crate::profile::MIGRATIONS,
        // Not `public_profile`: its signed versions belong to the vault that published it.
        restored: &[
            "personal_fields",
            "sharing_defaults",
            "sharing_overrides",
            "profile_photo",
        ],
    },
    Domain {
        name: "feed",
        migrations: crate::feed::MIGRATIONS,
        // Not `events`: the feed and the audit chain stay this vault's (a restore adds an
        // audit event of its own).
        restored: &[],
    },
    Domain {
        name: "backup",
        migrations: crate::backup::MIGRATIONS,
        restored: &[],
    },
    Domain {
        name: "devices",
        migrations: crate::devices::MIGRATIONS,
        restored: &[],
    },
    Domain {
        name: "connections",
        migrations: crate::connections::MIGRATIONS,
        // Not restored: connection keys belong to the vault that agreed them (a restored
        // vault connects again).
        restored: &[],
    },
    Domain {
        name: "messages",
        migrations: crate::messages::MIGRATIONS,
        restored: &[],
    },
    Domain {
        name: "grants",
        migrations: crate::grants::MIGRATIONS,
        // Grants belong to connections, which are not restored.
        restored: &[],
    },
];

/// All migrations of all domains in sequence order.
///
/// # Panics
///
/// If two migrations share a number or the sequence has a gap: a programming error that the
/// tests below catch before release (the first vault created or loaded would panic).
pub fn schema() -> Schema {
    static SCHEMA: OnceLock<Vec<&'static str>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut all: Vec<&Migration> = REGISTRY.iter().flat_map(|d| d.migrations).collect();
        all.sort_by_key(|m| m.seq);
        for (i, m) in all.iter().enumerate() {
            assert_eq!(
                m.seq as usize,
                i + 1,
                "migration numbers must run 1, 2, 3, …"
            );
        }
        all.into_iter().map(|m| m.sql).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_contiguous_and_rise_within_each_domain() {
        assert!(!schema().is_empty());
        for d in REGISTRY {
            assert!(
                d.migrations.windows(2).all(|w| w[0].seq < w[1].seq),
                "{}: a domain's migrations are appended, in rising order",
                d.name
            );
        }
        let mut names: Vec<&str> = REGISTRY.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len(), "domain names are unique");
    }

    /// The migrations vaults already ran are frozen: a vault records only how many ran, so
    /// editing one (or inserting one before the end) would leave existing vaults with a
    /// schema the code does not expect. Add new migrations at the end instead.
    #[test]
    fn shipped_migrations_never_change() {
        use sha2::Digest;
        const SHIPPED: &[&str] = &[
            "dc3c34b4c6b2e2c937eef44143472974727d284aa5a592522ac1b9205ad29092",
            "ce04a36b4df01b874bd5764cb2713890ea0e10dbafbdaa86c246dfef2f3946dd",
            "2cd3f66ff758f2f120614adffea252b045c1371fb5722231d63f19e41974f85c",
            "5ee6c582586fe3fd8a9b17bf0bb7082be11073ea84e0b9bda40f2634c41a8b73",
            "a27d550728c432aa8bd790f7ffc541ecb5e2ae4c5ca42b211e32e8baa6922250",
            "a1077cc53fe7404ad9bc7c94f1b0b78f9d722a4b782d72384aaa0748a8c96934",
            "883e0b8fc1d624da9c47a3946daf27c683eb061e9ce2246b933a999acd01db9b",
            "417961f856306c29ad7b9b611247c8d5c8f887459a3b837e9778811ed8971d37",
            "669833d3017c1ba3cb37b30cf53a859a8493f7c10b9c3624914648ca96aab4ca",
            "7d1048b77a08cef789c4adce01818aeab2df9ea5c25529462e4fcd9619bc7827",
            "df95167a3461f34a71435b92b03648e9d0e53809db3b1a227fdf7712f7027469",
            "f238039e228b1c8bd59542a9c0a7d79c72c1bb39f3ec94f0353f9a772415ffda",
        ];
        let now: Vec<String> = schema()
            .iter()
            .map(|m| hex::encode(sha2::Sha256::digest(m.as_bytes())))
            .collect();
        assert!(
            now.len() >= SHIPPED.len(),
            "a shipped migration was removed"
        );
        for (i, (shipped, current)) in SHIPPED.iter().zip(&now).enumerate() {
            assert_eq!(shipped, current, "migration {i} changed after it shipped");
        }
        assert_eq!(
            now.len(),
            SHIPPED.len(),
            "record the new migrations: {now:#?}"
        );
    }
}
