//! Field checks for untrusted input. Each returns the value in its canonical form, or a
//! `BadRequest` naming the field; none panics on any input.

use crate::ApiError;

/// A person's name: trimmed, 1–100 characters of letters (ASCII, Latin-1 and Latin
/// Extended-A), space, `'` and `-`, with at least one letter.
pub(crate) fn person_name(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let count = v.chars().count();
    if !(1..=100).contains(&count) {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1 to 100 characters"
        )));
    }
    let allowed = |c: char| is_name_letter(c) || matches!(c, ' ' | '\'' | '-');
    if !v.chars().all(allowed) || !v.chars().any(is_name_letter) {
        return Err(ApiError::bad_request(format!(
            "{field} may contain only letters, spaces, ' and -"
        )));
    }
    Ok(v.to_owned())
}

fn is_name_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (('\u{C0}'..='\u{17F}').contains(&c) && c != '\u{D7}' && c != '\u{F7}')
}

/// An email address: trimmed, lowercased, at most 254 characters, of the usual shape
/// (`local@domain.tld`, a dot-atom local part, LDH domain labels).
pub(crate) fn email(value: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("email is not a valid address");
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() || v.len() > 254 || !v.is_ascii() {
        return Err(bad());
    }
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    if !local_part_ok(local) || !domain_ok(domain) {
        return Err(bad());
    }
    Ok(v)
}

fn local_part_ok(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    (1..=64).contains(&local.len())
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
        })
}

fn domain_ok(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let tld = labels.last().copied().unwrap_or("");
    labels.len() >= 2
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An invite code: 12–50 of `[A-Za-z0-9_-]`, case-sensitive (a short custom code would be
/// guessable).
pub(crate) fn invite_code(value: &str) -> Result<String, ApiError> {
    let ok = (12..=50).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ApiError::bad_request(
            "invite code must be 12 to 50 of A-Z a-z 0-9 _ -",
        ))
    }
}

/// A bearer token presented in a body: non-empty, at most 128 base64url characters.
pub(crate) fn token_shape(field: &str, value: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("{field} is malformed")))
    }
}

/// A device label: trimmed, 1–64 bytes (what the vault stores), no control characters.
pub(crate) fn device_name(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    // The vault stores the same name and takes at most 64 bytes.
    if !(1..=64).contains(&v.len()) || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "device_name must be 1 to 64 bytes of printable characters",
        ));
    }
    Ok(v.to_owned())
}

/// A member id: a lowercase hyphenated UUID.
pub(crate) fn member_id(value: &str) -> Result<String, ApiError> {
    if crate::secret::is_uuid(value) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::bad_request("member_id must be a lowercase UUID"))
    }
}

/// Exactly `N` bytes as hex (either case); answered in lowercase by callers that store it.
pub(crate) fn hex_bytes<const N: usize>(field: &str, value: &str) -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    if value.len() != 2 * N || hex::decode_to_slice(value, &mut out).is_err() {
        return Err(ApiError::bad_request(format!(
            "{field} must be {} hex characters",
            2 * N
        )));
    }
    Ok(out)
}

/// Exactly `N` bytes as lowercase hex: for values the client derives and the server stores or
/// looks up as given, so each has one spelling.
pub(crate) fn lower_hex<const N: usize>(field: &str, value: &str) -> Result<[u8; N], ApiError> {
    let lowercase = value
        .bytes()
        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    match hex_bytes::<N>(field, value) {
        Ok(bytes) if lowercase => Ok(bytes),
        _ => Err(ApiError::bad_request(format!(
            "{field} must be {} lowercase hex characters",
            2 * N
        ))),
    }
}

/// An Ed25519 device public key: 64 hex characters that decode to a valid, non-weak point.
/// Returns the lowercase hex form (the stored form).
pub(crate) fn device_public_key(value: &str) -> Result<String, ApiError> {
    let bytes = hex_bytes::<32>("device_public_key", value)?;
    vettid_crypto::sign::VerifyingKey::from_bytes(&bytes).map_err(|_| {
        ApiError::bad_request("device_public_key is not a valid Ed25519 public key")
    })?;
    Ok(hex::encode(bytes))
}

/// A NATS user public key (`U…`, 56 characters, valid checksum).
pub(crate) fn nats_user_key(value: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("nats_public_key must be a NATS user public key (U…)");
    if value.len() != 56 || !value.starts_with('U') {
        return Err(bad());
    }
    nkeys::KeyPair::from_public_key(value).map_err(|_| bad())?;
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_latin_letters_and_refuse_the_rest() {
        assert_eq!(
            person_name("n", "  Zoë O'Brien-Łukasz ").unwrap(),
            "Zoë O'Brien-Łukasz"
        );
        for bad in [
            "",
            "   ",
            "--",
            "Bob1",
            "Bob<script>",
            "A×B",
            "名前",
            &"a".repeat(101),
        ] {
            assert!(person_name("n", bad).is_err(), "{bad:?}");
        }
        assert!(person_name("n", &"é".repeat(100)).is_ok());
    }

    #[test]
    fn emails_are_canonicalized_and_shaped() {
        assert_eq!(
            email("  Alice.B+x@Example.COM ").unwrap(),
            "alice.b+x@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "alice@@example.com",
            "al..ice@example.com",
            ".alice@example.com",
            "alice@-example.com",
            "alice@example.c0m",
            "alice@exa mple.com",
            "alice\r\nBcc: x@example.com",
            "alïce@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(186));
        assert_eq!(long.len(), 255);
        assert!(email(&long).is_err());
    }

    #[test]
    fn hex_fields_need_exact_length() {
        assert!(hex_bytes::<2>("f", "abCD").is_ok());
        assert!(hex_bytes::<2>("f", "abc").is_err());
        assert!(hex_bytes::<2>("f", "abcg").is_err());
        assert!(hex_bytes::<2>("f", "abcdef").is_err());
    }

    #[test]
    fn lowercase_hex_fields_have_one_spelling() {
        assert_eq!(lower_hex::<2>("f", "abcd").unwrap(), [0xab, 0xcd]);
        for bad in ["abCD", "ABCD", "abc", "abcg", "abcdef", " abcd", ""] {
            assert!(lower_hex::<2>("f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn weak_device_keys_are_refused() {
        // The identity point (small order) encodes as 01 00…00.
        let identity = format!("01{}", "00".repeat(31));
        assert!(device_public_key(&identity).is_err());
    }

    #[test]
    fn nats_keys_need_a_user_prefix_and_checksum() {
        let kp = nkeys::KeyPair::new_user();
        assert!(nats_user_key(&kp.public_key()).is_ok());
        let acct = nkeys::KeyPair::new_account();
        assert!(nats_user_key(&acct.public_key()).is_err());
        let mut broken = kp.public_key();
        broken.replace_range(10..11, if &broken[10..11] == "A" { "B" } else { "A" });
        assert!(nats_user_key(&broken).is_err());
    }
}
