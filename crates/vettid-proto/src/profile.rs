//! Personal data and the public profile (to be filled: see the issue).

use serde::{Deserialize, Serialize};

/// Personal-data and profile operations (inside the session; the vault must have been
/// unlocked in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileOp {
    /// Placeholder until the domain is filled in.
    Nothing,
}

/// Answers to [`ProfileOp`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileReply {
    /// Placeholder until the domain is filled in.
    Nothing,
}
