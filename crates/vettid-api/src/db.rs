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
