//! Governance proposals (issue 16): what a proposal is, the rules it must keep, and the
//! signature of the platform's proposal key over its canonical encoding, which apps pin like
//! the PCR manifest key. Ballots, blind tokens and results build on this (not yet here).
//!
//! A proposal travels as its canonical postcard encoding (`payload`) and an Ed25519 signature
//! over `PROPOSAL_LABEL ‖ payload`; a verifier decodes the payload, re-encodes it and accepts
//! it only if the bytes are the same (one proposal, one encoding) and its rules hold.

use serde::{Deserialize, Serialize};
use vettid_crypto::sign::{Signature, SigningKey, VerifyingKey};

/// What the proposal key signs before a proposal's payload.
pub const PROPOSAL_LABEL: &[u8] = b"vettid/v1/proposal\0";
/// A title's length at most, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// A text's length, in characters.
pub const TEXT_CHARS: std::ops::RangeInclusive<usize> = 10..=10_000;
/// How many choices a proposal offers.
pub const CHOICES: std::ops::RangeInclusive<usize> = 2..=20;
/// A choice's or a category's length at most, in characters.
pub const MAX_LABEL_CHARS: usize = 100;
/// A signed proposal's payload at most (its rules keep it well under).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The choices when a proposal names none.
pub const DEFAULT_CHOICES: [&str; 3] = ["yes", "no", "abstain"];

/// A proposal's number: `P` and seven digits (`P0000042`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProposalNumber(String);

impl ProposalNumber {
    /// The number `n` (at most 9,999,999).
    pub fn new(n: u32) -> Option<ProposalNumber> {
        (n <= 9_999_999).then(|| ProposalNumber(format!("P{n:07}")))
    }

    /// Its text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProposalNumber {
    type Error = ProposalError;
    fn try_from(s: String) -> Result<Self, ProposalError> {
        let digits = s.strip_prefix('P').ok_or(ProposalError::Number)?;
        if digits.len() != 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProposalError::Number);
        }
        Ok(ProposalNumber(s))
    }
}

impl From<ProposalNumber> for String {
    fn from(n: ProposalNumber) -> String {
        n.0
    }
}

impl std::fmt::Display for ProposalNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many ballots a proposal needs for its result to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quorum {
    /// Any number.
    None,
    /// At least this percentage (1–100) of the members eligible at opening.
    Percent(u8),
    /// At least this many ballots (1 or more).
    Count(u64),
}

impl Quorum {
    /// Whether `ballots` cast out of `eligible` meet it.
    pub fn met(&self, ballots: u64, eligible: u64) -> bool {
        match *self {
            Quorum::None => true,
            // ballots / eligible ≥ p / 100, without division.
            Quorum::Percent(p) => u128::from(ballots) * 100 >= u128::from(eligible) * u128::from(p),
            Quorum::Count(n) => ballots >= n,
        }
    }
}

/// A proposal as the platform signs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Its number.
    pub number: ProposalNumber,
    /// Its title (1–200 characters).
    pub title: String,
    /// Its text (10–10,000 characters).
    pub text: String,
    /// Its category (1–100 characters).
    pub category: String,
    /// The choices (2–20, each 1–100 characters, all different).
    pub choices: Vec<String>,
    /// The quorum.
    pub quorum: Quorum,
    /// When voting opens (ms since the Unix epoch).
    pub opens_ms: u64,
    /// When voting closes (after it opens).
    pub closes_ms: u64,
    /// The public key under which this proposal's eligibility tokens are blindly signed
    /// (RFC 9474; one key per proposal), as its issuer encodes it.
    #[serde(with = "serde_bytes")]
    pub token_key: Vec<u8>,
}

/// Where a proposal is in its life by the clock (a suspension is the platform's, on top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not open yet.
    Upcoming,
    /// Ballots are taken.
    Active,
    /// Closed: results may be published.
    Closed,
}

/// Why a proposal is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposalError {
    /// The number is not `P` and seven digits.
    #[error("a proposal number is P and seven digits")]
    Number,
    /// The title is empty or longer than 200 characters.
    #[error("the title must be 1 to 200 characters")]
    Title,
    /// The text is shorter than 10 or longer than 10,000 characters.
    #[error("the text must be 10 to 10,000 characters")]
    Text,
    /// The category is empty or too long.
    #[error("the category must be 1 to 100 characters")]
    Category,
    /// Fewer than 2 or more than 20 choices, one empty or too long, or two the same.
    #[error("2 to 20 different choices of 1 to 100 characters each")]
    Choices,
    /// A percentage outside 1–100 or a count of 0.
    #[error("a quorum is a percentage from 1 to 100 or a count of at least 1")]
    Quorum,
    /// It does not close after it opens.
    #[error("a proposal closes after it opens")]
    Window,
    /// No token key.
    #[error("a proposal names its token key")]
    TokenKey,
    /// The signature does not verify under the proposal key, or the payload is not one
    /// proposal's canonical encoding.
    #[error("the proposal's signature does not verify")]
    Signature,
}

/// Characters of `s` that are not control characters, or `None` if it has one.
fn plain_chars(s: &str) -> Option<usize> {
    (!s.chars().any(char::is_control)).then(|| s.chars().count())
}

impl Proposal {
    /// Whether it keeps the rules (lengths, choices, quorum, window, token key).
    pub fn check(&self) -> Result<(), ProposalError> {
        let title = plain_chars(&self.title).ok_or(ProposalError::Title)?;
        if !(1..=MAX_TITLE_CHARS).contains(&title) || self.title.trim().is_empty() {
            return Err(ProposalError::Title);
        }
        // The text may have line breaks, nothing else below U+0020.
        let text_ok = !self
            .text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t');
        if !text_ok || !TEXT_CHARS.contains(&self.text.trim().chars().count()) {
            return Err(ProposalError::Text);
        }
        let label = |s: &str| {
            plain_chars(s).is_some_and(|n| (1..=MAX_LABEL_CHARS).contains(&n))
                && !s.trim().is_empty()
        };
        if !label(&self.category) {
            return Err(ProposalError::Category);
        }
        let distinct: std::collections::BTreeSet<String> = self
            .choices
            .iter()
            .map(|c| c.trim().to_lowercase())
            .collect();
        if !CHOICES.contains(&self.choices.len())
            || !self.choices.iter().all(|c| label(c))
            || distinct.len() != self.choices.len()
        {
            return Err(ProposalError::Choices);
        }
        match self.quorum {
            Quorum::Percent(p) if !(1..=100).contains(&p) => return Err(ProposalError::Quorum),
            Quorum::Count(0) => return Err(ProposalError::Quorum),
            _ => {}
        }
        if self.closes_ms <= self.opens_ms {
            return Err(ProposalError::Window);
        }
        if self.token_key.is_empty() {
            return Err(ProposalError::TokenKey);
        }
        Ok(())
    }

    /// Its phase at `now_ms`: open from `opens_ms` (inclusive) to `closes_ms` (exclusive).
    pub fn phase(&self, now_ms: u64) -> Phase {
        if now_ms < self.opens_ms {
            Phase::Upcoming
        } else if now_ms < self.closes_ms {
            Phase::Active
        } else {
            Phase::Closed
        }
    }
}

/// A proposal with the proposal key's signature over its canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProposal {
    /// The proposal's canonical postcard encoding.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Ed25519 over [`PROPOSAL_LABEL`] ‖ `payload`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

fn proposal_message(payload: &[u8]) -> Vec<u8> {
    [PROPOSAL_LABEL, payload].concat()
}

impl SignedProposal {
    /// Signs `proposal` with the proposal key, if it keeps the rules.
    pub fn sign(proposal: &Proposal, key: &SigningKey) -> Result<SignedProposal, ProposalError> {
        proposal.check()?;
        let payload = postcard::to_allocvec(proposal).map_err(|_| ProposalError::Signature)?;
        let signature = key.sign(&proposal_message(&payload)).to_bytes().to_vec();
        Ok(SignedProposal { payload, signature })
    }

    /// The proposal, if the signature verifies under `key` (the pinned proposal key), the
    /// payload is its canonical encoding, and it keeps the rules.
    pub fn verify(&self, key: &VerifyingKey) -> Result<Proposal, ProposalError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(ProposalError::Signature);
        }
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| ProposalError::Signature)?;
        key.verify(&proposal_message(&self.payload), &signature)
            .map_err(|_| ProposalError::Signature)?;
        let proposal: Proposal =
            postcard::from_bytes(&self.payload).map_err(|_| ProposalError::Signature)?;
        if postcard::to_allocvec(&proposal).ok().as_deref() != Some(&self.payload[..]) {
            return Err(ProposalError::Signature);
        }
        proposal.check()?;
        Ok(proposal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_seed(&vettid_crypto::SecretBytes::from_array([seed; 32]))
    }

    fn proposal() -> Proposal {
        Proposal {
            number: ProposalNumber::new(42).unwrap(),
            title: "Adopt the 2027 budget".into(),
            text: "The budget attached to this proposal is adopted.".into(),
            category: "finance".into(),
            choices: DEFAULT_CHOICES.iter().map(|c| c.to_string()).collect(),
            quorum: Quorum::Percent(20),
            opens_ms: 1_000,
            closes_ms: 2_000,
            token_key: vec![7; 32],
        }
    }

    #[test]
    fn a_signed_proposal_verifies_only_under_its_key_and_unchanged() {
        let k = key(1);
        let signed = SignedProposal::sign(&proposal(), &k).unwrap();
        assert_eq!(signed.verify(&k.verifying_key()), Ok(proposal()));
        assert_eq!(
            signed.verify(&key(2).verifying_key()),
            Err(ProposalError::Signature)
        );
        for i in [0, signed.payload.len() / 2, signed.payload.len() - 1] {
            let mut bad = signed.clone();
            bad.payload[i] ^= 1;
            assert_eq!(
                bad.verify(&k.verifying_key()),
                Err(ProposalError::Signature)
            );
        }
        let mut bad = signed.clone();
        bad.signature[10] ^= 1;
        assert_eq!(
            bad.verify(&k.verifying_key()),
            Err(ProposalError::Signature)
        );
        bad.signature.truncate(63);
        assert_eq!(
            bad.verify(&k.verifying_key()),
            Err(ProposalError::Signature)
        );
        // Bytes after the encoding, signed: not the canonical encoding, refused.
        let mut long = signed.payload.clone();
        long.push(0);
        let padded = SignedProposal {
            signature: k.sign(&proposal_message(&long)).to_bytes().to_vec(),
            payload: long,
        };
        assert_eq!(
            padded.verify(&k.verifying_key()),
            Err(ProposalError::Signature)
        );
        // A proposal breaking the rules is refused even when signed.
        let mut p = proposal();
        p.choices = vec!["yes".into()];
        let payload = postcard::to_allocvec(&p).unwrap();
        let forged = SignedProposal {
            signature: k.sign(&proposal_message(&payload)).to_bytes().to_vec(),
            payload,
        };
        assert_eq!(
            forged.verify(&k.verifying_key()),
            Err(ProposalError::Choices)
        );
    }

    #[test]
    fn the_rules_refuse_each_bad_field_with_its_own_error() {
        type Change = fn(&mut Proposal);
        let cases: [(Change, ProposalError); 14] = [
            (|p| p.title = String::new(), ProposalError::Title),
            (|p| p.title = "t".repeat(201), ProposalError::Title),
            (|p| p.title = "a\u{1b}[2J".into(), ProposalError::Title),
            (|p| p.text = "too short".into(), ProposalError::Text),
            (|p| p.text = "x".repeat(10_001), ProposalError::Text),
            (|p| p.category = " ".into(), ProposalError::Category),
            (
                |p| p.choices = vec!["yes".into(), "Yes ".into()],
                ProposalError::Choices,
            ),
            (
                |p| p.choices = (0..21).map(|i| i.to_string()).collect(),
                ProposalError::Choices,
            ),
            (|p| p.choices.push(String::new()), ProposalError::Choices),
            (|p| p.quorum = Quorum::Percent(0), ProposalError::Quorum),
            (|p| p.quorum = Quorum::Percent(101), ProposalError::Quorum),
            (|p| p.quorum = Quorum::Count(0), ProposalError::Quorum),
            (|p| p.closes_ms = p.opens_ms, ProposalError::Window),
            (|p| p.token_key.clear(), ProposalError::TokenKey),
        ];
        for (change, error) in cases {
            let mut p = proposal();
            change(&mut p);
            assert_eq!(p.check(), Err(error), "{p:?}");
            assert_eq!(SignedProposal::sign(&p, &key(1)), Err(error));
        }
        let mut p = proposal();
        p.text = format!("{}\nwith a second paragraph", p.text);
        p.title = "t".repeat(200);
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn numbers_are_p_and_seven_digits() {
        assert_eq!(ProposalNumber::new(42).unwrap().as_str(), "P0000042");
        assert_eq!(ProposalNumber::new(9_999_999).unwrap().as_str(), "P9999999");
        assert!(ProposalNumber::new(10_000_000).is_none());
        for bad in [
            "",
            "P",
            "P123456",
            "P12345678",
            "p0000042",
            "P00000a2",
            "X0000042",
            "P٠٠٠٠٠٤٢",
        ] {
            assert_eq!(
                ProposalNumber::try_from(bad.to_string()),
                Err(ProposalError::Number),
                "{bad}"
            );
            let json = format!("\"{bad}\"");
            assert!(serde_json::from_str::<ProposalNumber>(&json).is_err());
        }
        let n: ProposalNumber = serde_json::from_str("\"P0000042\"").unwrap();
        assert_eq!(n, ProposalNumber::new(42).unwrap());
    }

    #[test]
    fn phase_follows_the_window_and_quorum_counts_without_rounding() {
        let p = proposal();
        assert_eq!(p.phase(999), Phase::Upcoming);
        assert_eq!(p.phase(1_000), Phase::Active);
        assert_eq!(p.phase(1_999), Phase::Active);
        assert_eq!(p.phase(2_000), Phase::Closed);
        assert!(Quorum::Percent(20).met(20, 100));
        assert!(!Quorum::Percent(20).met(19, 100));
        assert!(Quorum::Percent(34).met(34, 100));
        assert!(!Quorum::Percent(34).met(1, 3));
        assert!(Quorum::Percent(100).met(u64::MAX, u64::MAX));
        assert!(Quorum::Count(3).met(3, 10) && !Quorum::Count(3).met(2, 10));
        assert!(Quorum::None.met(0, 10));
    }
}
