//! The metadata database: opening it (SQLite file, WAL, foreign keys on) and bringing its
//! schema up to date with the migrations in `migrations/`, which are compiled into the binary.
//!
//! Queries are runtime-checked (`sqlx::query`, `query_as` + `FromRow`) and use only portable
//! SQL so that PostgreSQL can follow with the same migrations.

use crate::config::ApiConfig;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

/// The pool every module queries.
pub(crate) type Db = SqlitePool;

/// The migrations, in order (file names as `sqlx migrate` expects them).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "suspensions",
        include_str!("../migrations/0002_suspensions.sql"),
    ),
    (
        3,
        "device confirmation",
        include_str!("../migrations/0003_device_confirmation.sql"),
    ),
    (
        4,
        "admin sessions",
        include_str!("../migrations/0004_admin_sessions.sql"),
    ),
    (
        5,
        "devices of older NATS keys",
        include_str!("../migrations/0005_key_devices.sql"),
    ),
    (
        6,
        "staged recovery",
        include_str!("../migrations/0006_recovery.sql"),
    ),
    (
        7,
        "deletion and joined devices",
        include_str!("../migrations/0007_deletion.sql"),
    ),
    (
        8,
        "connect codes",
        include_str!("../migrations/0008_connect_codes.sql"),
    ),
];

fn migrator() -> Migrator {
    use sqlx::SqlSafeStr as _;
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DbOpenError {
    #[error("unsupported database URL (only sqlite: is built in): {0}")]
    Unsupported(String),
    #[error("opening the database: {0}")]
    Connect(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Opens (creating if missing) the database `config` names and applies pending migrations.
pub(crate) async fn open(config: &ApiConfig) -> Result<Db, DbOpenError> {
    let options = match &config.database_url {
        None => SqliteConnectOptions::new().filename(config.data_dir.join("api.db")),
        Some(url) if url.starts_with("sqlite:") => SqliteConnectOptions::from_str(url)?,
        Some(url) => {
            let scheme = url.split(':').next().unwrap_or("").to_owned();
            return Err(DbOpenError::Unsupported(scheme));
        }
    };
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    migrator().run(&pool).await?;
    Ok(pool)
}

/// Whether `err` is a UNIQUE or PRIMARY KEY violation (a duplicate the client caused).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migrations that databases already ran are frozen (sqlx refuses to open a database
    /// whose applied migration changed): add a new one at the end instead.
    #[test]
    fn shipped_migrations_never_change() {
        use sha2::Digest;
        const SHIPPED: &[&str] = &[
            "aace3fc018d1f7339c915d77208454a95887845cd00e4ff0a760e9093a6b696f",
            "96a2e706f7723e3d169e841a300c2e7355669e1b025c115b2a2e92699e5f9863",
            "f3651d02d2ced973c13a2ac2c73788db48eeea57dccf96bb35382cefee1c3643",
            "f51dc29bcd0adffecc78b0fcbf3b891752ed773b6b7a9a06104f9eda8ef70a1a",
            "dafe8510e0ccb8804ce4a2f8d4fe7fc789420bef80a913eb4a2e09cc710d9141",
            "3b94466984bdf3ef5c2e9cd7fe9fc946ea9a218e869688306e41a4e7cb719787",
            "e2819bbf09445ea9496ee664c69f10d204561d4f553f84e40f2394c0f64926fb",
            "ead00f132694d011c7223b69774477de9491bc57d3dd90c78e9deac59465a91c",
        ];
        let now: Vec<String> = MIGRATIONS
            .iter()
            .map(|(_, _, sql)| hex::encode(sha2::Sha256::digest(sql.as_bytes())))
            .collect();
        for (i, (version, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1, "versions are 1, 2, 3, …");
        }
        assert!(
            now.len() >= SHIPPED.len(),
            "a shipped migration was removed"
        );
        for (i, (shipped, current)) in SHIPPED.iter().zip(&now).enumerate() {
            assert_eq!(
                shipped,
                current,
                "migration {} changed after it shipped",
                i + 1
            );
        }
        assert_eq!(
            now.len(),
            SHIPPED.len(),
            "record the new migrations: {now:#?}"
        );
    }
}
