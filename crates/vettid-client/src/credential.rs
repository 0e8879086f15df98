//! The split-custody credential from the app: the profile holds the blob; each use sends it
//! with the password's verifier inside the session and stores the next blob the vault returns
//! (the one sent is dead from then on).
//!
//! A request whose answer never arrives must not lose the credential: before sending, the
//! request (its id and operation) is kept in the profile, sealed under a key derived from the
//! password's verifier (`credential.pending`), and the vault answers a retry of it again.
//! The SDK retries at once on transport failures, and on the next use (after a restart, or
//! once the network is back) sends the pending request first to get the current blob.

use crate::ClientError;
use crate::profile::Profile;
use crate::vault::Unlocked;
use vettid_proto::credential::{CredentialOp, CredentialResult};
use vettid_proto::session::{AppOp, AppReply};
use zeroize::Zeroizing;

/// The profile file holding the blob.
pub const BLOB: &str = "credential.blob";
/// The profile file holding a request whose answer has not arrived yet (sealed).
pub const PENDING: &str = "credential.pending";
/// Attempts at one credential request when answers are lost in transit.
const RETRIES: u32 = 3;
const PENDING_KEY: vettid_crypto::Label = vettid_crypto::Label::new("app/credential-pending");
const PENDING_AAD: &[u8] = b"vettid/v1/credential-pending\0";

/// A request sent and not yet answered.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pending {
    request: [u8; 16],
    op: CredentialOp,
}

/// Whether the vault refused a credential request before writing anything (so it need not be
/// sent again): its own refusals, a stale blob, a wrong password, no unlock, a locked vault.
fn settled(e: &ClientError) -> bool {
    use vettid_proto::enclave::VaultError as E;
    matches!(e, ClientError::Vault(v) if v.is_refusal()
        || matches!(v, E::StaleCredential | E::WrongPassword { .. } | E::LockedOut | E::NotUnlocked))
}

fn pending_key(member: &str, verifier: &[u8; 32]) -> vettid_crypto::aead::AeadKey {
    PENDING_KEY.derive(verifier, b"", member.as_bytes()).into()
}

impl<P: std::borrow::BorrowMut<Profile>> Unlocked<P>
where
    P: crate::vault::Seen,
{
    /// Runs `op` on the credential with `password` (its Argon2id verifier is what travels) and
    /// stores the next blob in the profile (written atomically before this returns).
    pub async fn credential(
        &mut self,
        password: &[u8],
        op: CredentialOp,
    ) -> Result<CredentialResult, ClientError> {
        let member = self.seen().borrow_mut().member()?.to_owned();
        let verifier = Zeroizing::new(crate::password_verifier(&member, password));
        let key = pending_key(&member, &verifier);
        // An earlier request whose answer was lost: send it again first, for the current blob.
        if let Some(sealed) = self.seen().borrow_mut().read_optional(PENDING)?
            && let Ok(plain) = key.open(PENDING_AAD, &sealed)
        {
            let pending: Pending = postcard::from_bytes(&plain)
                .map_err(|_| ClientError::Profile("credential.pending does not decode".into()))?;
            match self.send(&verifier, pending.op, pending.request).await {
                // Answered (now or before), or refused before anything was written.
                Ok(_) => {}
                Err(e) if settled(&e) => self.seen().borrow_mut().remove(PENDING)?,
                // Lost again, or the vault may have written: the next use tries once more.
                Err(e) => return Err(e),
            }
        }
        // One id for this request and its retries: if the answer is lost, the vault answers
        // the retry (same blob, same id) again instead of refusing the blob it rotated.
        let request: [u8; 16] = vettid_crypto::random_array();
        let pending = Zeroizing::new(
            postcard::to_allocvec(&Pending {
                request,
                op: op.clone(),
            })
            .expect("a request encodes"),
        );
        self.seen()
            .borrow_mut()
            .write_secret(PENDING, &key.seal(PENDING_AAD, &pending))?;
        let result = self.send(&verifier, op, request).await;
        // Kept while the answer is lost or the vault may have written the rotation (a
        // conflict or storage failure after its log entry); gone once an answer's blob is
        // stored (`send` removes it then) or the vault refused before writing anything.
        if let Err(e) = &result
            && settled(e)
        {
            self.seen().borrow_mut().remove(PENDING)?;
        }
        result
    }

    /// Sends one credential request (retrying transport failures with the same id), stores the
    /// next blob — first: the vault has already retired the one sent — and then checks and
    /// records the version.
    async fn send(
        &mut self,
        verifier: &Zeroizing<[u8; 32]>,
        op: CredentialOp,
        request: [u8; 16],
    ) -> Result<CredentialResult, ClientError> {
        let message = AppOp::Credential {
            blob: self.seen().borrow_mut().read(BLOB)?.to_vec(),
            verifier: verifier.clone(),
            op,
            request,
        };
        let mut attempts = 0;
        let (result, version) = loop {
            attempts += 1;
            match self.exchange(message.clone()).await {
                Err(e) if attempts < RETRIES && e.is_transient() => continue,
                other => break other?,
            }
        };
        if let Ok(AppReply::Credential(reply)) = &result {
            // The new blob first (the one sent is retired), and then the request is done: a
            // failed check below must not send it again with the new blob (a second use).
            self.seen().borrow_mut().write_secret(BLOB, &reply.blob)?;
            self.seen().borrow_mut().remove(PENDING)?;
        }
        self.record(&result, version, true)?;
        match result.map_err(ClientError::Vault)? {
            AppReply::Credential(reply) => Ok(reply.result),
            _ => Err(ClientError::Protocol(
                "unexpected answer to a credential operation".into(),
            )),
        }
    }

    /// Changes the password: the vault replaces the verifier inside the credential.
    pub async fn change_password(&mut self, old: &[u8], new: &[u8]) -> Result<(), ClientError> {
        let member = self.seen().borrow_mut().member()?.to_owned();
        let new_verifier = Zeroizing::new(crate::password_verifier(&member, new));
        self.credential(old, CredentialOp::ChangePassword { new_verifier })
            .await
            .map(|_| ())
    }
}
