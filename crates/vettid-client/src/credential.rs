//! The split-custody credential from the app: the profile holds the blob; each use sends it
//! with the password's verifier inside the session and stores the next blob the vault returns
//! (the one sent is dead from then on).

use crate::ClientError;
use crate::profile::Profile;
use crate::vault::Session;
use vettid_proto::credential::{CredentialOp, CredentialResult};
use vettid_proto::session::{AppOp, AppReply};
use zeroize::Zeroizing;

/// The profile file holding the blob.
pub const BLOB: &str = "credential.blob";
/// Attempts at one credential request when answers are lost in transit.
const RETRIES: u32 = 3;

impl Session {
    /// Runs `op` on the credential with `password` (its Argon2id verifier is what travels),
    /// stores the next blob in the profile (written atomically before this returns) and
    /// records the vault version.
    pub async fn credential(
        &mut self,
        profile: &mut Profile,
        password: &[u8],
        op: CredentialOp,
    ) -> Result<CredentialResult, ClientError> {
        let member = profile.member()?.to_owned();
        let blob = profile.read(BLOB)?;
        let verifier = Zeroizing::new(crate::password_verifier(&member, password));
        // One id for this request and its retries: if the answer is lost, the vault answers
        // the retry (same blob, same id) again instead of refusing the blob it rotated.
        let request: [u8; 16] = vettid_crypto::random_array();
        let message = AppOp::Credential {
            blob: blob.to_vec(),
            verifier,
            op,
            request,
        };
        let mut attempts = 0;
        let reply = loop {
            attempts += 1;
            match self.call(message.clone()).await {
                Err(e) if attempts < RETRIES && e.is_transient() => continue,
                other => break other?,
            }
        };
        let AppReply::Credential(reply) = reply else {
            return Err(ClientError::Protocol(
                "unexpected answer to a credential operation".into(),
            ));
        };
        profile.write_secret(BLOB, &reply.blob)?;
        crate::app::observe(profile, &reply.version)?;
        Ok(reply.result)
    }

    /// Changes the password: the vault replaces the verifier inside the credential.
    pub async fn change_password(
        &mut self,
        profile: &mut Profile,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), ClientError> {
        let member = profile.member()?.to_owned();
        let new_verifier = Zeroizing::new(crate::password_verifier(&member, new));
        self.credential(profile, old, CredentialOp::ChangePassword { new_verifier })
            .await
            .map(|_| ())
    }
}
