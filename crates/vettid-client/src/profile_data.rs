//! Personal data, sharing settings, the public profile and the photo from the app: one method
//! per operation, on an [`Unlocked`] session (every answer's vault version is checked there).
//! (`profile` is taken by the app's files: see [`crate::profile`].)

use crate::ClientError;
use crate::vault::{Seen, Unlocked};
use vettid_proto::enclave::SignedVersion;
use vettid_proto::profile::{
    Category, Field, NewField, Override, Photo, ProfileOp, ProfileReply, PublicProfile,
    PublicSettings, Select, ShareTarget, SignedPublicProfile,
};

fn unexpected() -> ClientError {
    ClientError::Protocol("unexpected answer to a profile operation".into())
}

impl<S: Seen> Unlocked<S> {
    async fn profile_change(&mut self, op: ProfileOp) -> Result<SignedVersion, ClientError> {
        match self.run(op).await? {
            ProfileReply::Changed(v) => self.checked(v),
            _ => Err(unexpected()),
        }
    }

    /// Every page of a field listing, sorted by display order then key.
    async fn all_fields(
        &mut self,
        op: impl Fn(Option<String>) -> ProfileOp,
    ) -> Result<Vec<Field>, ClientError> {
        let (mut all, mut after) = (Vec::new(), None);
        loop {
            let ProfileReply::Fields { fields, next } = self.run(op(after.take())).await? else {
                return Err(unexpected());
            };
            all.extend(fields);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        all.sort_by(|a, b| (a.order, &a.key).cmp(&(b.order, &b.key)));
        Ok(all)
    }

    /// Creates or replaces fields (all or nothing).
    pub async fn set_fields(
        &mut self,
        fields: Vec<NewField>,
    ) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::Set(fields)).await
    }

    /// The selected fields, with their values.
    pub async fn get_fields(&mut self, select: Select) -> Result<Vec<Field>, ClientError> {
        self.all_fields(|after| ProfileOp::Get {
            select: select.clone(),
            after,
        })
        .await
    }

    /// Deletes fields (each must exist), with their overrides.
    pub async fn delete_fields(&mut self, keys: Vec<String>) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::Delete(keys)).await
    }

    /// Every field's metadata; values of sensitive fields only when `reveal`.
    pub async fn list_fields(&mut self, reveal: bool) -> Result<Vec<Field>, ClientError> {
        self.all_fields(|after| ProfileOp::List { reveal, after })
            .await
    }

    /// Each category's sharing default.
    pub async fn sharing_defaults(&mut self) -> Result<Vec<(Category, bool)>, ClientError> {
        match self.run(ProfileOp::SharingDefaults).await? {
            ProfileReply::Defaults(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }

    /// Sets a category's sharing default (sensitive fields are never shared by default).
    pub async fn set_sharing_default(
        &mut self,
        category: Category,
        share: bool,
    ) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::SetDefault { category, share })
            .await
    }

    /// A connection's overrides.
    pub async fn sharing_overrides(
        &mut self,
        connection: &str,
    ) -> Result<Vec<Override>, ClientError> {
        let op = ProfileOp::Overrides {
            connection: connection.into(),
        };
        match self.run(op).await? {
            ProfileReply::Overrides(o) => Ok(o),
            _ => Err(unexpected()),
        }
    }

    /// Shares (or withholds) a field or category with one connection.
    pub async fn set_sharing_override(
        &mut self,
        connection: &str,
        target: ShareTarget,
        share: bool,
    ) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::SetOverride {
            connection: connection.into(),
            target,
            share,
        })
        .await
    }

    /// Removes a per-connection override.
    pub async fn clear_sharing_override(
        &mut self,
        connection: &str,
        target: ShareTarget,
    ) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::ClearOverride {
            connection: connection.into(),
            target,
        })
        .await
    }

    /// The field keys `connection` would see.
    pub async fn effective_sharing(
        &mut self,
        connection: &str,
    ) -> Result<Vec<String>, ClientError> {
        let op = ProfileOp::Effective {
            connection: connection.into(),
        };
        match self.run(op).await? {
            ProfileReply::Effective(keys) => Ok(keys),
            _ => Err(unexpected()),
        }
    }

    /// The public profile settings.
    pub async fn public_settings(&mut self) -> Result<PublicSettings, ClientError> {
        match self.run(ProfileOp::PublicSettings).await? {
            ProfileReply::PublicSettings(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    /// Replaces the public profile settings.
    pub async fn set_public_settings(
        &mut self,
        settings: PublicSettings,
    ) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::SetPublic(settings)).await
    }

    /// Signs the public profile now. The answer is verified here against the identity key the
    /// caller knows for this vault (e.g. from `whoami`), so a bad signature never reaches peers.
    pub async fn publish_profile(
        &mut self,
        identity: &[u8; 32],
    ) -> Result<(SignedPublicProfile, PublicProfile, SignedVersion), ClientError> {
        let ProfileReply::Published { profile, version } = self.run(ProfileOp::Publish).await?
        else {
            return Err(unexpected());
        };
        if &profile.identity != identity {
            return Err(ClientError::Protocol(
                "the public profile is signed by another identity".into(),
            ));
        }
        let decoded = profile.verify().ok_or_else(|| {
            ClientError::Protocol("the public profile signature does not verify".into())
        })?;
        Ok((profile, decoded, self.checked(version)?))
    }

    /// Sets the photo (JPEG or PNG, at most `MAX_PHOTO` bytes).
    pub async fn set_photo(&mut self, bytes: Vec<u8>) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::SetPhoto(bytes)).await
    }

    /// The photo.
    pub async fn photo(&mut self) -> Result<Photo, ClientError> {
        match self.run(ProfileOp::GetPhoto).await? {
            ProfileReply::Photo(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    /// Deletes the photo.
    pub async fn delete_photo(&mut self) -> Result<SignedVersion, ClientError> {
        self.profile_change(ProfileOp::DeletePhoto).await
    }
}
