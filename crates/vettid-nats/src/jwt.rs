//! NATS JWTs built by hand: the `ed25519-nkey` header, claims, a `jti` that hashes the
//! claims, and the signature of `header.claims` by an nkey.
//!
//! Only the claim fields this project needs are produced; the server ignores nothing it
//! requires (`jti`, `iat`, `iss`, `sub`, `nats.type`, `nats.version`).

use crate::NatsError;
use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::KeyPair;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const HEADER: &[u8] = br#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// Signs `claims` (an object without `jti`) with `signer`, whose public key becomes `iss`.
pub(crate) fn sign(signer: &KeyPair, mut claims: Value) -> Result<String, NatsError> {
    claims["iss"] = json!(signer.public_key());
    // serde_json maps are sorted, so the hash (and the JWT) is a function of the claims.
    let jti = BASE32_NOPAD.encode(&Sha256::digest(claims.to_string().as_bytes()));
    claims["jti"] = json!(jti);
    let input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(HEADER),
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    );
    let sig = signer
        .sign(input.as_bytes())
        .map_err(|e| NatsError::Invalid(format!("signing a JWT: {e}")))?;
    Ok(format!("{input}.{}", BASE64URL_NOPAD.encode(&sig)))
}

/// The self-signed operator, naming the system account.
pub(crate) fn operator(operator: &str, system_account: &str, iat: u64) -> Value {
    json!({
        "sub": operator, "iat": iat, "name": "vettid",
        "nats": {"type": "operator", "version": 2, "system_account": system_account},
    })
}

/// An account. `jetstream` turns on unlimited JetStream storage; users that carry no
/// permissions of their own get none (`default_permissions` deny everything).
pub(crate) fn account(
    name: &str,
    account: &str,
    signing_key: Option<&str>,
    jetstream: bool,
    revocations: &BTreeMap<String, u64>,
    iat: u64,
) -> Value {
    let mut limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
    });
    if jetstream {
        // Without these four the account has JetStream off.
        for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[k] = json!(-1);
        }
    }
    let mut nats = json!({
        "type": "account", "version": 2, "limits": limits,
        "default_permissions": {"pub": {"deny": [">"]}, "sub": {"deny": [">"]}},
    });
    if let Some(k) = signing_key {
        nats["signing_keys"] = json!([k]);
    }
    if !revocations.is_empty() {
        nats["revocations"] = json!(revocations);
    }
    json!({"sub": account, "iat": iat, "name": name, "nats": nats})
}

/// What a user may publish and subscribe to. Empty lists mean the account's defaults, which
/// deny everything.
#[derive(Debug, Default)]
pub(crate) struct Permissions {
    pub(crate) publish: Vec<String>,
    pub(crate) subscribe: Vec<String>,
    /// Deny everything (overrides the lists).
    pub(crate) nothing: bool,
    /// May publish once to the reply subject of each message it received.
    pub(crate) responses: bool,
    /// Subscriptions and message size at most (`None`: unlimited).
    pub(crate) limits: Option<UserLimits>,
}

/// Per-connection limits the server enforces for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserLimits {
    /// Subscriptions at once.
    pub(crate) subs: i64,
    /// Bytes per message.
    pub(crate) payload: i64,
}

/// A user. `issuer_account` is set when `signer` is an account signing key.
pub(crate) fn user(
    name: &str,
    user: &str,
    issuer_account: Option<&str>,
    perms: &Permissions,
    iat: u64,
    exp: Option<u64>,
) -> Value {
    let mut nats = json!({"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1});
    if perms.nothing {
        nats["pub"] = json!({"deny": [">"]});
        nats["sub"] = json!({"deny": [">"]});
    } else {
        if !perms.publish.is_empty() {
            nats["pub"] = json!({"allow": perms.publish});
        }
        if !perms.subscribe.is_empty() {
            nats["sub"] = json!({"allow": perms.subscribe});
        }
    }
    if let Some(l) = perms.limits {
        nats["subs"] = json!(l.subs);
        nats["payload"] = json!(l.payload);
    }
    if perms.responses {
        // One reply per request received; ttl 0 = the server default (2 minutes).
        nats["resp"] = json!({"max": 1, "ttl": 0});
    }
    if let Some(a) = issuer_account {
        nats["issuer_account"] = json!(a);
    }
    let mut claims = json!({"sub": user, "iat": iat, "name": name, "nats": nats});
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_verifies_with_the_issuer_key_and_names_it() {
        let op = KeyPair::new_operator();
        let jwt = sign(&op, operator(&op.public_key(), "ASYS", 7)).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(BASE64URL_NOPAD.decode(parts[0].as_bytes()).unwrap(), HEADER);
        let sig = BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap();
        op.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        let claims: Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
        assert_eq!(claims["iss"], json!(op.public_key()));
        assert_eq!(claims["nats"]["system_account"], json!("ASYS"));
        assert_eq!(claims["jti"].as_str().unwrap().len(), 52);
    }
}
