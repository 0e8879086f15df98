//! Personal data, sharing settings, the public profile and the photo.
//!
//! - **Personal fields** are namespaced (`contact.email`, `address.home.city`), each with a
//!   [`Category`], a `sensitive` flag and a sort order. Values are wiped when dropped and never
//!   printed ([`Secret`]); a listing shows the values of non-sensitive fields only, unless the
//!   app asks to reveal them.
//! - **Sharing** decides which fields a connection would see: a default per category, then
//!   per-connection overrides by category or by field. A *sensitive* field is shared only by
//!   an explicit per-connection override *of that field*: no default and no category override
//!   ever reveals it (see [`ProfileOp::Effective`]).
//! - **The public profile** is published as [`SignedPublicProfile`]: the canonical postcard
//!   encoding of a [`PublicProfile`], signed by the vault identity over
//!   [`PUBLIC_PROFILE_LABEL`] ‖ payload. Anyone checks it with [`verify_public_profile`].
//! - **The photo** is one JPEG or PNG of at most [`MAX_PHOTO`] bytes (it fits one session
//!   message), recognised by its magic bytes.

use crate::enclave::SignedVersion;
pub use crate::secrets::Secret;
use serde::{Deserialize, Serialize};

/// Longest field key (bytes).
pub const MAX_KEY: usize = 128;
/// Longest field value (bytes).
pub const MAX_FIELD_VALUE: usize = 4 * 1024;
/// Most fields, keys or selectors in one request.
pub const MAX_BATCH: usize = 64;
/// Most fields in a vault (so that a listing of keys fits one message).
pub const MAX_FIELDS: usize = 256;
/// Largest encoded set request (bytes): it must fit one session message.
pub const MAX_REQUEST: usize = 48 * 1024;
/// Encoded bytes of fields per get or list answer at most (the rest comes on the next page).
pub const PAGE_BYTES: usize = 48 * 1024;
/// Longest connection id (bytes).
pub const MAX_CONNECTION: usize = 64;
/// Largest photo (bytes): it fits one session message.
pub const MAX_PHOTO: usize = 48 * 1024;
/// Longest display name (bytes).
pub const MAX_DISPLAY_NAME: usize = 128;
/// Longest bio (bytes).
pub const MAX_BIO: usize = 1024;
/// Most links on the public profile.
pub const MAX_LINKS: usize = 8;
/// Longest link label or URL (bytes).
pub const MAX_LINK: usize = 512;
/// Largest encoded public profile payload (bytes).
pub const MAX_PUBLIC_PROFILE: usize = 32 * 1024;
/// Domain separation of the public profile signature.
pub const PUBLIC_PROFILE_LABEL: &[u8] = b"vettid/v1/public-profile\0";

/// What a personal field is about: sharing defaults are per category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Category {
    /// Names, birth date, nationality.
    Identity,
    /// E-mail, phone.
    Contact,
    /// Postal addresses.
    Address,
    /// Bank accounts, tax ids.
    Financial,
    /// Medical data.
    Health,
    /// Anything else.
    Other,
}

impl Category {
    /// Every category, in order.
    pub const ALL: [Category; 6] = [
        Category::Identity,
        Category::Contact,
        Category::Address,
        Category::Financial,
        Category::Health,
        Category::Other,
    ];

    /// The category's name (`identity`, `contact`…), as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Identity => "identity",
            Category::Contact => "contact",
            Category::Address => "address",
            Category::Financial => "financial",
            Category::Health => "health",
            Category::Other => "other",
        }
    }

    /// The category named `name`.
    pub fn parse(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// Why a personal-data or profile operation was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProfileError {
    /// Keys are 1–[`MAX_KEY`] bytes of `a-z 0-9 . _ -` with no empty segment.
    #[error("keys are 1-{MAX_KEY} bytes of a-z 0-9 . _ - with no empty segment")]
    Key,
    /// A field key needs a namespace (`contact.email`, not `email`).
    #[error("a key needs a namespace (e.g. contact.email)")]
    NoNamespace,
    /// Connection ids are 1–[`MAX_CONNECTION`] bytes of `A-Z a-z 0-9 _ -`.
    #[error("connection ids are 1-{MAX_CONNECTION} bytes of A-Z a-z 0-9 _ -")]
    Connection,
    /// One request sets, gets, deletes or publishes 1–[`MAX_BATCH`] fields.
    #[error("1-{MAX_BATCH} fields at a time")]
    Batch,
    /// A value is at most [`MAX_FIELD_VALUE`] bytes.
    #[error("values are at most {MAX_FIELD_VALUE} bytes")]
    Value,
    /// A key appears twice in one request.
    #[error("a key appears twice in one request")]
    Duplicate,
    /// A set request is at most [`MAX_REQUEST`] bytes encoded.
    #[error("a set request is at most {MAX_REQUEST} bytes")]
    RequestSize,
    /// A vault holds at most [`MAX_FIELDS`] fields.
    #[error("a vault holds at most {MAX_FIELDS} fields")]
    TooManyFields,
    /// The display name is at most [`MAX_DISPLAY_NAME`] bytes and the bio [`MAX_BIO`].
    #[error("the display name is at most {MAX_DISPLAY_NAME} bytes and the bio {MAX_BIO}")]
    Text,
    /// At most [`MAX_LINKS`] links, each with a 1–[`MAX_LINK`] byte URL and label.
    #[error("at most {MAX_LINKS} links with a 1-{MAX_LINK} byte URL")]
    Links,
    /// A sensitive field cannot be published.
    #[error("a sensitive field cannot be published")]
    Sensitive,
    /// The public profile is at most [`MAX_PUBLIC_PROFILE`] bytes encoded.
    #[error("the public profile is at most {MAX_PUBLIC_PROFILE} bytes")]
    PublicSize,
    /// A photo is at most [`MAX_PHOTO`] bytes.
    #[error("a photo is at most {MAX_PHOTO} bytes")]
    PhotoSize,
    /// A photo is a JPEG or a PNG.
    #[error("a photo must be a JPEG or a PNG")]
    PhotoFormat,
}

/// Checks a field key: 1–[`MAX_KEY`] bytes of `a-z0-9._-`, with at least one dot, no empty
/// segment.
pub fn check_key(key: &str) -> Result<(), ProfileError> {
    check_namespace(key)?;
    if !key.contains('.') {
        return Err(ProfileError::NoNamespace);
    }
    Ok(())
}

/// Checks a namespace (a key prefix, dots optional): as [`check_key`] without the dot rule.
pub fn check_namespace(ns: &str) -> Result<(), ProfileError> {
    let chars_ok = ns
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ns.is_empty() || ns.len() > MAX_KEY || !chars_ok || ns.split('.').any(str::is_empty) {
        return Err(ProfileError::Key);
    }
    Ok(())
}

/// Checks a connection id: 1–[`MAX_CONNECTION`] bytes of `A-Za-z0-9_-`.
pub fn check_connection(id: &str) -> Result<(), ProfileError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CONNECTION
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProfileError::Connection)
    }
}

/// A field to store (set is an upsert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewField {
    /// Namespaced key.
    pub key: String,
    /// Value (at most [`MAX_FIELD_VALUE`] bytes).
    pub value: Secret,
    /// Category.
    pub category: Category,
    /// Sensitive: hidden in listings, never shared without a per-field override, never public.
    pub sensitive: bool,
    /// Position in the app's display (lower first).
    pub order: i32,
}

/// A stored field; `value` is `None` where a listing hides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Namespaced key.
    pub key: String,
    /// Value, if shown.
    pub value: Option<Secret>,
    /// Category.
    pub category: Category,
    /// Sensitive.
    pub sensitive: bool,
    /// Display order.
    pub order: i32,
    /// Last change (the host's clock, ms).
    pub updated_ms: u64,
}

/// Which fields a get reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Select {
    /// These keys (each must exist, at most [`MAX_BATCH`]).
    Keys(Vec<String>),
    /// The key itself and every key under `namespace.`.
    Namespace(String),
    /// Every field of a category.
    Category(Category),
}

/// What a per-connection override applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ShareTarget {
    /// One field (the only way to share a sensitive one).
    Field(String),
    /// Every non-sensitive field of a category.
    Category(Category),
}

/// One per-connection override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// What it applies to.
    pub target: ShareTarget,
    /// Share or withhold.
    pub share: bool,
}

/// A link on the public profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Label (`website`, `mastodon`…).
    pub label: String,
    /// URL.
    pub url: String,
}

/// What the member chose to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublicSettings {
    /// Display name.
    pub display_name: String,
    /// Short bio.
    pub bio: String,
    /// Links (at most [`MAX_LINKS`]).
    pub links: Vec<Link>,
    /// Keys of non-sensitive personal fields to publish (at most [`MAX_BATCH`]).
    pub fields: Vec<String>,
}

impl PublicSettings {
    /// Checks sizes, counts and keys: the first problem.
    pub fn check(&self) -> Result<(), ProfileError> {
        if self.display_name.len() > MAX_DISPLAY_NAME || self.bio.len() > MAX_BIO {
            return Err(ProfileError::Text);
        }
        if self.links.len() > MAX_LINKS
            || self
                .links
                .iter()
                .any(|l| l.label.len() > MAX_LINK || l.url.is_empty() || l.url.len() > MAX_LINK)
        {
            return Err(ProfileError::Links);
        }
        if self.fields.len() > MAX_BATCH {
            return Err(ProfileError::Batch);
        }
        self.fields.iter().try_for_each(|k| check_key(k))
    }
}

/// A published field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicField {
    /// Key.
    pub key: String,
    /// Category.
    pub category: Category,
    /// Value.
    pub value: String,
}

/// The signed content of a public profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicProfile {
    /// Member id.
    pub member: String,
    /// Publication counter (1 for the first; a peer keeps the highest it has seen).
    pub version: u64,
    /// When it was issued (the host's clock, ms).
    pub issued_ms: u64,
    /// Display name.
    pub display_name: String,
    /// Bio.
    pub bio: String,
    /// Links.
    pub links: Vec<Link>,
    /// Published fields (non-sensitive only).
    pub fields: Vec<PublicField>,
}

/// A public profile as handed to peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPublicProfile {
    /// The canonical postcard encoding of a [`PublicProfile`].
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Ed25519 over [`PUBLIC_PROFILE_LABEL`] ‖ payload.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// The vault identity public key.
    pub identity: [u8; 32],
}

impl SignedPublicProfile {
    /// The profile, if the signature verifies under the profile's own identity key. A peer
    /// MUST also check that `identity` is the key it knows for the member.
    pub fn verify(&self) -> Option<PublicProfile> {
        verify_public_profile(&self.payload, &self.signature, &self.identity)
    }
}

/// The message the vault signs for a public profile payload.
pub fn public_profile_message(payload: &[u8]) -> Vec<u8> {
    [PUBLIC_PROFILE_LABEL, payload].concat()
}

/// Checks a public profile: a strict Ed25519 signature by `identity_pub` over the label and
/// `payload`, a canonical encoding (re-encoding gives the same bytes), and the size limit.
/// `None` on any failure.
pub fn verify_public_profile(
    payload: &[u8],
    signature: &[u8],
    identity_pub: &[u8; 32],
) -> Option<PublicProfile> {
    use vettid_crypto::sign::{Signature, VerifyingKey};
    if payload.len() > MAX_PUBLIC_PROFILE {
        return None;
    }
    let key = VerifyingKey::from_bytes(identity_pub).ok()?;
    let signature = Signature::from_slice(signature).ok()?;
    key.verify(&public_profile_message(payload), &signature)
        .ok()?;
    let profile: PublicProfile = postcard::from_bytes(payload).ok()?;
    (postcard::to_allocvec(&profile).ok()?.as_slice() == payload).then_some(profile)
}

/// A photo's image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageKind {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
}

impl ImageKind {
    /// The format of `bytes`, by magic bytes.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageKind::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageKind::Png)
        } else {
            None
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
        }
    }
}

/// Checks a photo: JPEG or PNG, 1–[`MAX_PHOTO`] bytes.
pub fn check_photo(bytes: &[u8]) -> Result<ImageKind, ProfileError> {
    if bytes.len() > MAX_PHOTO {
        return Err(ProfileError::PhotoSize);
    }
    ImageKind::sniff(bytes).ok_or(ProfileError::PhotoFormat)
}

/// The member's photo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Photo {
    /// Format.
    pub kind: ImageKind,
    /// The image.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Last change (the host's clock, ms).
    pub updated_ms: u64,
}

/// Checks a set request: count, keys, value sizes, duplicates and encoded size.
pub fn check_set(fields: &[NewField]) -> Result<(), ProfileError> {
    if fields.is_empty() || fields.len() > MAX_BATCH {
        return Err(ProfileError::Batch);
    }
    let mut keys = std::collections::BTreeSet::new();
    for f in fields {
        check_key(&f.key)?;
        if f.value.expose().len() > MAX_FIELD_VALUE {
            return Err(ProfileError::Value);
        }
        if !keys.insert(f.key.as_str()) {
            return Err(ProfileError::Duplicate);
        }
    }
    if postcard::to_allocvec(fields).map_or(true, |b| b.len() > MAX_REQUEST) {
        return Err(ProfileError::RequestSize);
    }
    Ok(())
}

/// Personal-data and profile operations (inside the session; the vault must have been
/// unlocked in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileOp {
    /// Create or replace fields (1–[`MAX_BATCH`], all or nothing).
    Set(Vec<NewField>),
    /// Read fields with their values, in key order from after `after` (one page).
    Get {
        /// Which fields.
        select: Select,
        /// Continue after this key.
        after: Option<String>,
    },
    /// Delete fields (each must exist; all or nothing). Their overrides and publication go too.
    Delete(Vec<String>),
    /// Every field's key and metadata, in key order from after `after`; values of
    /// non-sensitive fields, and of sensitive ones only when `reveal`.
    List {
        /// Show sensitive values too.
        reveal: bool,
        /// Continue after this key.
        after: Option<String>,
    },
    /// The sharing default of every category.
    SharingDefaults,
    /// Set a category's sharing default (never applies to sensitive fields).
    SetDefault {
        /// Category.
        category: Category,
        /// Share by default.
        share: bool,
    },
    /// A connection's overrides.
    Overrides {
        /// Connection id.
        connection: String,
    },
    /// Add or replace a per-connection override (a field target must exist).
    SetOverride {
        /// Connection id.
        connection: String,
        /// Field or category.
        target: ShareTarget,
        /// Share or withhold.
        share: bool,
    },
    /// Remove a per-connection override (it must exist).
    ClearOverride {
        /// Connection id.
        connection: String,
        /// Field or category.
        target: ShareTarget,
    },
    /// The keys a connection would see, in key order: a field override decides; else, for a
    /// non-sensitive field, a category override, else the category default. A sensitive field
    /// is shared only by a field override.
    Effective {
        /// Connection id.
        connection: String,
    },
    /// The public profile settings.
    PublicSettings,
    /// Replace the public profile settings (published fields must exist and not be sensitive).
    SetPublic(PublicSettings),
    /// Sign the public profile now (a new publication counter).
    Publish,
    /// Set the photo (JPEG or PNG, at most [`MAX_PHOTO`] bytes).
    SetPhoto(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The photo.
    GetPhoto,
    /// Delete the photo.
    DeletePhoto,
}

/// Answers to [`ProfileOp`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileReply {
    /// A change: the signed vault version.
    Changed(SignedVersion),
    /// Fields; `next` continues the listing when more match.
    Fields {
        /// This page.
        fields: Vec<Field>,
        /// Pass as `after` for the next page.
        next: Option<String>,
    },
    /// Every category's default.
    Defaults(Vec<(Category, bool)>),
    /// A connection's overrides.
    Overrides(Vec<Override>),
    /// The keys a connection would see.
    Effective(Vec<String>),
    /// The public profile settings.
    PublicSettings(PublicSettings),
    /// The newly signed public profile, and the vault version of its counter.
    Published {
        /// The profile.
        profile: SignedPublicProfile,
        /// The signed vault version.
        version: SignedVersion,
    },
    /// The photo.
    Photo(Photo),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(key: &str, value: &str) -> NewField {
        NewField {
            key: key.into(),
            value: Secret::new(value),
            category: Category::Contact,
            sensitive: false,
            order: 0,
        }
    }

    #[test]
    fn keys_need_a_namespace_and_a_small_alphabet() {
        for ok in ["contact.email", "address.home.city", "a.b", "x-1._y.z"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        let long = format!("a.{}", "b".repeat(MAX_KEY));
        for bad in [
            "",
            "email",
            "Contact.email",
            "a..b",
            ".a",
            "a.",
            "a b.c",
            "é.x",
            &long,
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_namespace("contact").is_ok());
        assert!(check_connection("conn_1-A").is_ok());
        for bad in ["", "a.b", "a b", &"c".repeat(65)] {
            assert!(check_connection(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_requests_are_bounded() {
        assert!(check_set(&[field("contact.email", "a@b")]).is_ok());
        assert!(check_set(&[]).is_err(), "empty");
        let many: Vec<_> = (0..=MAX_BATCH)
            .map(|i| field(&format!("x.k{i}"), "v"))
            .collect();
        assert!(check_set(&many).is_err(), "too many");
        let long = "v".repeat(MAX_FIELD_VALUE + 1);
        assert!(check_set(&[field("x.k", &long)]).is_err(), "too long");
        assert!(
            check_set(&[field("x.k", "1"), field("x.k", "2")]).is_err(),
            "duplicate"
        );
        let big: Vec<_> = (0..16)
            .map(|i| field(&format!("x.k{i}"), &"v".repeat(MAX_FIELD_VALUE)))
            .collect();
        assert!(check_set(&big).is_err(), "over one message");
    }

    #[test]
    fn photos_are_sniffed_by_magic_bytes() {
        assert_eq!(check_photo(b"\xFF\xD8\xFF\xE0rest"), Ok(ImageKind::Jpeg));
        assert_eq!(check_photo(b"\x89PNG\r\n\x1a\nrest"), Ok(ImageKind::Png));
        assert!(check_photo(b"GIF89a").is_err());
        assert!(check_photo(b"").is_err());
        let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
        big.resize(MAX_PHOTO + 1, 0);
        assert!(check_photo(&big).is_err());
    }

    #[test]
    fn a_public_profile_verifies_and_any_flipped_byte_fails() {
        let key = vettid_crypto::sign::SigningKey::generate();
        let identity = key.verifying_key().to_bytes();
        let profile = PublicProfile {
            member: "alice".into(),
            version: 3,
            issued_ms: 1_700_000_000_000,
            display_name: "Alice".into(),
            bio: "hi".into(),
            links: vec![Link {
                label: "web".into(),
                url: "https://example.org".into(),
            }],
            fields: vec![PublicField {
                key: "contact.email".into(),
                category: Category::Contact,
                value: "a@example.org".into(),
            }],
        };
        let payload = postcard::to_allocvec(&profile).unwrap();
        let sig = key.sign(&public_profile_message(&payload)).to_bytes();
        assert_eq!(
            verify_public_profile(&payload, &sig, &identity),
            Some(profile)
        );
        for i in 0..payload.len() {
            let mut p = payload.clone();
            p[i] ^= 1;
            assert_eq!(verify_public_profile(&p, &sig, &identity), None, "byte {i}");
        }
        let mut s = sig;
        s[10] ^= 1;
        assert_eq!(verify_public_profile(&payload, &s, &identity), None);
        let other = vettid_crypto::sign::SigningKey::generate()
            .verifying_key()
            .to_bytes();
        assert_eq!(verify_public_profile(&payload, &sig, &other), None);
        // Signed without the label: not a public profile.
        let bare = key.sign(&payload).to_bytes();
        assert_eq!(verify_public_profile(&payload, &bare, &identity), None);
    }
}
