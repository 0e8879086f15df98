//! The recovery phrase as the member sees it: 12 BIP-39 English words (the 128 bits the
//! enclave made at enrollment, and a 4-bit checksum that catches a mistyped word). The app
//! shows it once. Nothing keeps the phrase itself: the vault keeps its master key wrapped
//! under it (with the sealed secret S) and its backup key wrapped under it (without S, in
//! every backup's header too, so a backup opens with the phrase even without the operator).

use crate::ClientError;
use vettid_proto::session::RECOVERY_BYTES;
use zeroize::{Zeroize, Zeroizing};

/// A recovery phrase: wiped when dropped, never printed by `Debug`.
pub struct RecoveryPhrase(Zeroizing<String>);

impl RecoveryPhrase {
    /// The words for the enclave's `entropy`.
    pub fn from_entropy(entropy: &[u8; RECOVERY_BYTES]) -> RecoveryPhrase {
        let mut mnemonic = bip39::Mnemonic::from_entropy(entropy)
            .expect("16 bytes is a valid BIP-39 entropy length");
        let words = Zeroizing::new(mnemonic.to_string());
        mnemonic.zeroize();
        RecoveryPhrase(words)
    }

    /// Parses what the member typed: 12 words of the English list, in any case and spacing,
    /// whose checksum holds; a typed error otherwise (nothing is sent).
    pub fn parse(typed: &str) -> Result<RecoveryPhrase, ClientError> {
        let words: Vec<Zeroizing<String>> = typed
            .split_whitespace()
            .map(|w| Zeroizing::new(w.to_lowercase()))
            .collect();
        let normalized = Zeroizing::new(
            words
                .iter()
                .map(|w| w.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
        let mut mnemonic =
            bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &normalized)
                .map_err(|e| ClientError::Profile(format!("recovery phrase: {}", explain(&e))))?;
        let ok = mnemonic.word_count() == 12;
        mnemonic.zeroize();
        if !ok {
            return Err(ClientError::Profile(
                "recovery phrase: it has 12 words".into(),
            ));
        }
        Ok(RecoveryPhrase(normalized))
    }

    /// The words, space-separated (to show the member once).
    pub fn words(&self) -> &str {
        &self.0
    }

    /// The entropy the enclave checks.
    pub(crate) fn entropy(&self) -> Zeroizing<[u8; RECOVERY_BYTES]> {
        let mut mnemonic = bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &self.0)
            .expect("parsed or made from entropy");
        let (bytes, len) = mnemonic.to_entropy_array();
        mnemonic.zeroize();
        let mut out = Zeroizing::new([0u8; RECOVERY_BYTES]);
        out.copy_from_slice(&bytes[..len.min(RECOVERY_BYTES)]);
        let mut bytes = bytes;
        bytes.zeroize();
        out
    }
}

/// What was wrong with a typed phrase, in the member's words (never echoing the words).
fn explain(e: &bip39::Error) -> &'static str {
    match e {
        bip39::Error::BadWordCount(_) => "it has 12 words",
        bip39::Error::UnknownWord(_) => "a word is not on the BIP-39 English list",
        bip39::Error::InvalidChecksum => "the words do not check out (one is mistyped?)",
        _ => "not a recovery phrase",
    }
}

impl std::fmt::Debug for RecoveryPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryPhrase(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_their_entropy_and_typos_are_caught() {
        let entropy = [0x5a; RECOVERY_BYTES];
        let phrase = RecoveryPhrase::from_entropy(&entropy);
        assert_eq!(phrase.words().split(' ').count(), 12);
        assert_eq!(*phrase.entropy(), entropy);
        // Any case and spacing.
        let typed = format!("  {}  ", phrase.words().to_uppercase().replace(' ', "\n "));
        assert_eq!(*RecoveryPhrase::parse(&typed).unwrap().entropy(), entropy);
        // A swapped word breaks the checksum; an unknown word or a short phrase is refused.
        let mut words: Vec<&str> = phrase.words().split(' ').collect();
        words.swap(0, 1);
        assert!(RecoveryPhrase::parse(&words.join(" ")).is_err());
        assert!(RecoveryPhrase::parse("zebra notaword").is_err());
        let eleven: Vec<&str> = phrase.words().split(' ').take(11).collect();
        assert!(RecoveryPhrase::parse(&eleven.join(" ")).is_err());
        // 24 valid words are a phrase of another size: refused.
        let long = bip39::Mnemonic::from_entropy(&[1; 32]).unwrap().to_string();
        assert_eq!(long.split(' ').count(), 24);
        assert!(RecoveryPhrase::parse(&long).is_err());
        assert_eq!(format!("{phrase:?}"), "RecoveryPhrase(..)");
    }
}
