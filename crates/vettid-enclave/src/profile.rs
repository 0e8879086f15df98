//! The personal-data and profile domain: schema and handlers (`vettid_proto::profile`).

use crate::objects::Objects;
use crate::vault::Vault;
use vettid_proto::enclave::VaultError;
use vettid_proto::profile::{ProfileOp, ProfileReply};

/// The domain's tables (a vault migration).
pub const SCHEMA: &str = "CREATE TABLE profile_placeholder (x INTEGER);";

/// Runs one profile operation on an unlocked vault. `identity` signs the public profile.
pub fn handle(
    vault: &mut Vault,
    objects: &Objects<'_>,
    op: ProfileOp,
    now_ms: u64,
) -> Result<ProfileReply, VaultError> {
    let _ = (vault, objects, now_ms);
    match op {
        ProfileOp::Nothing => Ok(ProfileReply::Nothing),
    }
}
