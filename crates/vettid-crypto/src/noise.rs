//! The app ↔ enclave session: Noise `XKpsk3` (snow) over this crate's primitives, hybridised
//! with the X-Wing KEM (ML-KEM-768 + X25519).
//!
//! snow runs the Noise state machine; every primitive it calls is the one the rest of VettID
//! uses ([`Resolver`]): X25519 from x25519-dalek (non-contributory results refused),
//! ChaCha20-Poly1305 from RustCrypto, SHA-256 from RustCrypto. No second crypto stack enters
//! the enclave.
//!
//! The initiator (the app) encapsulates to the enclave's X-Wing key and carries the
//! ciphertext in the first handshake message; the shared secret is the `psk` mixed in at the
//! end of message 3. An attacker who records the traffic and later breaks X25519 still lacks
//! the ML-KEM half of the PSK (see `docs/PROTOCOL.md`).

use crate::SecretBytes;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::Digest;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::CryptoResolver;
use snow::types::{Cipher, Dh, Hash, Random};
use x_wing::{Decapsulator, KeyExport, TryDecapsulate};
use zeroize::Zeroizing;

pub use snow::{HandshakeState, StatelessTransportState};

/// The Noise protocol name of the session.
pub const PROTOCOL: &str = "Noise_XKpsk3_25519_ChaChaPoly_SHA256";
/// Size of an X-Wing public (encapsulation) key.
pub const KEM_PUBLIC_LEN: usize = x_wing::ENCAPSULATION_KEY_SIZE;
/// Size of an X-Wing ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = x_wing::CIPHERTEXT_SIZE;
/// The Noise transport limit: one message carries at most this many bytes.
pub const MAX_MESSAGE: usize = 65535;
/// Bytes a transport message adds to its plaintext (the Poly1305 tag).
pub const TAG_LEN: usize = 16;

/// A handshake or transport step failed (bad message, wrong key, wrong order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("noise: {0}")]
pub struct NoiseError(&'static str);

impl From<snow::Error> for NoiseError {
    fn from(e: snow::Error) -> Self {
        NoiseError(match e {
            snow::Error::Decrypt => "decryption failed",
            snow::Error::Dh => "key agreement failed",
            snow::Error::Input => "bad input",
            snow::Error::State(_) => "out of order",
            _ => "handshake failed",
        })
    }
}

/// The Noise protocol between vaults: the invitee knows the inviter's static key from the
/// invitation (IK), and a secret from the X-Wing KEM (mixed with the invitation's secret) is
/// the PSK of message 2. The responder keeps no state between messages, so a vault that locks
/// or restarts between them loses nothing.
pub const PEER_PROTOCOL: &str = "Noise_IKpsk2_25519_ChaChaPoly_SHA256";

/// Builds a handshake with the standard resolver.
fn builder(prologue: &[u8]) -> Result<snow::Builder<'_>, NoiseError> {
    builder_for(PROTOCOL, prologue)
}

fn builder_for<'a>(protocol: &str, prologue: &'a [u8]) -> Result<snow::Builder<'a>, NoiseError> {
    let params = protocol.parse().map_err(|_| NoiseError("protocol name"))?;
    Ok(snow::Builder::with_resolver(params, Box::new(Resolver)).prologue(prologue)?)
}

/// A vault's side of a connection handshake as the invitee ([`PEER_PROTOCOL`]), before
/// message 1: `local` is its static secret, `remote` the inviter's static key from the
/// invitation, `psk` the secret it encapsulated to the invitation's KEM key (mixed with the
/// invitation's secret).
pub fn peer_initiator(
    prologue: &[u8],
    local: &SecretBytes<32>,
    remote: &[u8; 32],
    psk: &SecretBytes<32>,
) -> Result<HandshakeState, NoiseError> {
    Ok(builder_for(PEER_PROTOCOL, prologue)?
        .local_private_key(local.expose())?
        .remote_public_key(remote)?
        .psk(2, psk.expose())?
        .build_initiator()?)
}

/// A vault's side of a connection handshake as the inviter, before message 1; the PSK is set
/// with [`HandshakeState::set_psk`] (location 2) once message 1 delivered the KEM ciphertext.
pub fn peer_responder(
    prologue: &[u8],
    local: &SecretBytes<32>,
) -> Result<HandshakeState, NoiseError> {
    Ok(builder_for(PEER_PROTOCOL, prologue)?
        .local_private_key(local.expose())?
        .build_responder()?)
}

/// The app's side of the handshake, before message 1.
///
/// `local` is the app's static X25519 secret (its device key); `remote` is the enclave's
/// static key *taken from a verified attestation document*; `psk` is the X-Wing shared secret.
pub fn initiator(
    prologue: &[u8],
    local: &SecretBytes<32>,
    remote: &[u8; 32],
    psk: &SecretBytes<32>,
) -> Result<HandshakeState, NoiseError> {
    Ok(builder(prologue)?
        .local_private_key(local.expose())?
        .remote_public_key(remote)?
        .psk(3, psk.expose())?
        .build_initiator()?)
}

/// The enclave's side of the handshake, before message 1. The PSK is set with
/// [`HandshakeState::set_psk`] once message 1 has delivered the KEM ciphertext.
pub fn responder(prologue: &[u8], local: &SecretBytes<32>) -> Result<HandshakeState, NoiseError> {
    Ok(builder(prologue)?
        .local_private_key(local.expose())?
        .build_responder()?)
}

/// Test vectors only (feature `test-vectors`): the same handshakes with fixed ephemeral keys
/// (`docs/PROTOCOL.md`).
#[cfg(feature = "test-vectors")]
pub fn initiator_with_ephemeral(
    prologue: &[u8],
    local: &SecretBytes<32>,
    remote: &[u8; 32],
    psk: &SecretBytes<32>,
    ephemeral: &SecretBytes<32>,
) -> Result<HandshakeState, NoiseError> {
    Ok(builder(prologue)?
        .local_private_key(local.expose())?
        .remote_public_key(remote)?
        .psk(3, psk.expose())?
        .fixed_ephemeral_key_for_testing_only(ephemeral.expose())
        .build_initiator()?)
}

/// Test vectors only (feature `test-vectors`): see `initiator_with_ephemeral`.
#[cfg(feature = "test-vectors")]
pub fn responder_with_ephemeral(
    prologue: &[u8],
    local: &SecretBytes<32>,
    ephemeral: &SecretBytes<32>,
) -> Result<HandshakeState, NoiseError> {
    Ok(builder(prologue)?
        .local_private_key(local.expose())?
        .fixed_ephemeral_key_for_testing_only(ephemeral.expose())
        .build_responder()?)
}

/// The two keys of a finished handshake (initiator → responder, responder → initiator), for
/// a caller that derives its own keys from them (a connection's epochs: messages between
/// vaults are asynchronous and at-least-once, which Noise's transport nonces do not suit).
pub fn split_keys(handshake: &mut HandshakeState) -> (SecretBytes<32>, SecretBytes<32>) {
    let (a, b) = handshake.dangerously_get_raw_split();
    (SecretBytes::from_array(a), SecretBytes::from_array(b))
}

/// The enclave's X-Wing decapsulation key. Non-contributory X25519 halves are refused.
pub struct KemSecret(x_wing::DecapsulationKeyRejectNonContrib);

impl KemSecret {
    /// A new random key.
    pub fn generate() -> Self {
        Self::from_seed(&SecretBytes::random())
    }

    /// The key expanded from a 32-byte seed (the X-Wing private key format).
    pub fn from_seed(seed: &SecretBytes<32>) -> Self {
        Self(x_wing::DecapsulationKeyRejectNonContrib::from(
            *seed.expose(),
        ))
    }

    /// The public (encapsulation) key, [`KEM_PUBLIC_LEN`] bytes.
    pub fn public_key(&self) -> Vec<u8> {
        self.0.encapsulation_key().to_bytes().to_vec()
    }

    /// The shared secret for `ciphertext`; `None` if it is malformed or non-contributory.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Option<SecretBytes<32>> {
        let ct = x_wing::Ciphertext::try_from(ciphertext).ok()?;
        let ss = self.0.try_decapsulate(&ct).ok()?;
        Some(SecretBytes::from_array(ss.into()))
    }
}

impl std::fmt::Debug for KemSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KemSecret(..)")
    }
}

/// Encapsulates a fresh shared secret to `public_key`: the ciphertext to send and the secret.
pub fn encapsulate(public_key: &[u8]) -> Option<(Vec<u8>, SecretBytes<32>)> {
    let mut randomness = Zeroizing::new([0u8; x_wing::ENCAPSULATION_RANDOMNESS_SIZE]);
    getrandom::fill(&mut randomness[..]).expect("the OS random source failed");
    encapsulate_from(public_key, &randomness)
}

/// Test vectors only (feature `test-vectors`): encapsulation with caller-supplied randomness.
#[cfg(feature = "test-vectors")]
pub fn encapsulate_with(
    public_key: &[u8],
    randomness: &[u8; x_wing::ENCAPSULATION_RANDOMNESS_SIZE],
) -> Option<(Vec<u8>, SecretBytes<32>)> {
    encapsulate_from(public_key, randomness)
}

fn encapsulate_from(
    public_key: &[u8],
    randomness: &[u8; x_wing::ENCAPSULATION_RANDOMNESS_SIZE],
) -> Option<(Vec<u8>, SecretBytes<32>)> {
    let ek = x_wing::EncapsulationKey::try_from(public_key).ok()?;
    let (ct, ss) = ek.encapsulate_deterministic(&(*randomness).into());
    Some((ct.to_vec(), SecretBytes::from_array(ss.into())))
}

/// The X25519 public key of a static secret.
pub fn public_key(secret: &SecretBytes<32>) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret.expose())).to_bytes()
}

/// snow's primitives, mapped to this crate's dependencies. Anything other than
/// 25519 / ChaChaPoly / SHA256 is unavailable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resolver;

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OsRandom))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        matches!(choice, DHChoice::Curve25519).then(|| Box::new(X25519::default()) as Box<dyn Dh>)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        matches!(choice, HashChoice::SHA256).then(|| Box::new(Sha256::default()) as Box<dyn Hash>)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        matches!(choice, CipherChoice::ChaChaPoly)
            .then(|| Box::new(ChaChaPoly::default()) as Box<dyn Cipher>)
    }
}

struct OsRandom;

impl Random for OsRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        getrandom::fill(dest).map_err(|_| snow::Error::Rng)
    }
}

#[derive(Default)]
struct X25519 {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        // snow checks the length before calling.
        self.secret.copy_from_slice(&privkey[..32]);
        self.public = public_key(&SecretBytes::from_array(*self.secret));
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.try_fill_bytes(&mut secret[..])?;
        self.set(&secret[..]);
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.secret[..]
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow passes its key buffer, which may be longer than the key.
        let their: [u8; 32] = pubkey
            .get(..32)
            .and_then(|k| k.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = x25519_dalek::StaticSecret::from(*self.secret)
            .diffie_hellman(&x25519_dalek::PublicKey::from(their));
        if !shared.was_contributory() {
            return Err(snow::Error::Dh);
        }
        out[..32].copy_from_slice(shared.as_bytes());
        Ok(())
    }
}

#[derive(Default)]
struct ChaChaPoly {
    key: Zeroizing<[u8; 32]>,
}

impl ChaChaPoly {
    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(*self.key))
    }

    /// Noise's ChaChaPoly nonce: 32 zero bits, then the counter little-endian.
    fn nonce(n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&n.to_le_bytes());
        Nonce::from(bytes)
    }
}

impl Cipher for ChaChaPoly {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }
    fn set(&mut self, key: &[u8; 32]) {
        self.key.copy_from_slice(key);
    }
    fn encrypt(&self, nonce: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        out[..len].copy_from_slice(plaintext);
        let tag = self
            .cipher()
            .encrypt_inout_detached(&Self::nonce(nonce), authtext, (&mut out[..len]).into())
            .expect("ChaCha20-Poly1305 accepts any Noise-sized message");
        out[len..len + TAG_LEN].copy_from_slice(&tag);
        len + TAG_LEN
    }
    fn decrypt(
        &self,
        nonce: u64,
        authtext: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let len = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(snow::Error::Decrypt)?;
        let (body, tag) = ciphertext.split_at(len);
        out[..len].copy_from_slice(body);
        let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| snow::Error::Decrypt)?;
        match self.cipher().decrypt_inout_detached(
            &Self::nonce(nonce),
            authtext,
            (&mut out[..len]).into(),
            &tag,
        ) {
            Ok(()) => Ok(len),
            Err(_) => {
                out[..len].fill(0);
                Err(snow::Error::Decrypt)
            }
        }
    }
}

#[derive(Default)]
struct Sha256(sha2::Sha256);

impl Hash for Sha256 {
    fn name(&self) -> &'static str {
        "SHA256"
    }
    fn block_len(&self) -> usize {
        64
    }
    fn hash_len(&self) -> usize {
        32
    }
    fn reset(&mut self) {
        self.0 = sha2::Sha256::new();
    }
    fn input(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn result(&mut self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.0.finalize_reset());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> (StatelessTransportState, StatelessTransportState, Vec<u8>) {
        let app = SecretBytes::random();
        let enclave = SecretBytes::random();
        let kem = KemSecret::generate();
        let (ct, ss) = encapsulate(&kem.public_key()).unwrap();
        let mut i = initiator(b"p", &app, &public_key(&enclave), &ss).unwrap();
        let mut r = responder(b"p", &enclave).unwrap();
        let mut m = vec![0u8; MAX_MESSAGE];
        let mut p = vec![0u8; MAX_MESSAGE];
        let n = i.write_message(&ct, &mut m).unwrap();
        let k = r.read_message(&m[..n], &mut p).unwrap();
        r.set_psk(3, kem.decapsulate(&p[..k]).unwrap().expose())
            .unwrap();
        let n = r.write_message(&[], &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        let n = i.write_message(b"hello", &mut m).unwrap();
        let k = r.read_message(&m[..n], &mut p).unwrap();
        assert_eq!(&p[..k], b"hello");
        assert_eq!(r.get_remote_static().unwrap(), public_key(&app));
        (
            i.into_stateless_transport_mode().unwrap(),
            r.into_stateless_transport_mode().unwrap(),
            ct,
        )
    }

    #[test]
    fn both_sides_agree_and_transport_round_trips() {
        let (i, r, _) = handshake();
        let mut c = vec![0u8; 64];
        let mut p = vec![0u8; 64];
        let n = i.write_message(7, b"op", &mut c).unwrap();
        assert_eq!(n, 2 + TAG_LEN);
        let k = r.read_message(7, &c[..n], &mut p).unwrap();
        assert_eq!(&p[..k], b"op");
        // Another nonce, or a flipped bit: refused.
        assert!(r.read_message(8, &c[..n], &mut p).is_err());
        c[0] ^= 1;
        assert!(r.read_message(7, &c[..n], &mut p).is_err());
    }

    #[test]
    fn a_wrong_psk_fails_at_message_three() {
        let app = SecretBytes::random();
        let enclave = SecretBytes::random();
        let kem = KemSecret::generate();
        let (ct, _) = encapsulate(&kem.public_key()).unwrap();
        let wrong = SecretBytes::random();
        let mut i = initiator(b"p", &app, &public_key(&enclave), &wrong).unwrap();
        let mut r = responder(b"p", &enclave).unwrap();
        let mut m = vec![0u8; MAX_MESSAGE];
        let mut p = vec![0u8; MAX_MESSAGE];
        let n = i.write_message(&ct, &mut m).unwrap();
        let k = r.read_message(&m[..n], &mut p).unwrap();
        r.set_psk(3, kem.decapsulate(&p[..k]).unwrap().expose())
            .unwrap();
        let n = r.write_message(&[], &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        let n = i.write_message(&[], &mut m).unwrap();
        assert!(r.read_message(&m[..n], &mut p).is_err());
    }

    #[test]
    fn a_different_prologue_or_enclave_key_fails() {
        let app = SecretBytes::random();
        let enclave = SecretBytes::random();
        let kem = KemSecret::generate();
        let (ct, ss) = encapsulate(&kem.public_key()).unwrap();
        let mut m = vec![0u8; MAX_MESSAGE];
        let mut p = vec![0u8; MAX_MESSAGE];
        // Prologue mismatch: message 1's payload does not authenticate.
        let mut i = initiator(b"alice", &app, &public_key(&enclave), &ss).unwrap();
        let mut r = responder(b"bob", &enclave).unwrap();
        let n = i.write_message(&ct, &mut m).unwrap();
        assert!(r.read_message(&m[..n], &mut p).is_err());
        // Another enclave key: the real enclave cannot read message 1.
        let other = SecretBytes::random();
        let mut i = initiator(b"p", &app, &public_key(&other), &ss).unwrap();
        let mut r = responder(b"p", &enclave).unwrap();
        let n = i.write_message(&ct, &mut m).unwrap();
        assert!(r.read_message(&m[..n], &mut p).is_err());
    }

    /// The same handshake and transport with snow's reference primitives and with ours give
    /// identical bytes: the resolver is a faithful mapping.
    #[test]
    fn our_primitives_match_snows_reference_implementation() {
        let run = |ours: bool| -> Vec<Vec<u8>> {
            let params: snow::params::NoiseParams = PROTOCOL.parse().unwrap();
            let b = || {
                if ours {
                    snow::Builder::with_resolver(params.clone(), Box::new(Resolver))
                } else {
                    snow::Builder::with_resolver(
                        params.clone(),
                        Box::new(snow::resolvers::DefaultResolver),
                    )
                }
            };
            let (app, enclave, psk) = ([1u8; 32], [2u8; 32], [3u8; 32]);
            let (e1, e2) = ([4u8; 32], [5u8; 32]);
            let enclave_pub = public_key(&SecretBytes::from_array(enclave));
            let mut i = b()
                .prologue(b"vectors")
                .unwrap()
                .local_private_key(&app)
                .unwrap()
                .remote_public_key(&enclave_pub)
                .unwrap()
                .psk(3, &psk)
                .unwrap()
                .fixed_ephemeral_key_for_testing_only(&e1)
                .build_initiator()
                .unwrap();
            let mut r = b()
                .prologue(b"vectors")
                .unwrap()
                .local_private_key(&enclave)
                .unwrap()
                .psk(3, &psk)
                .unwrap()
                .fixed_ephemeral_key_for_testing_only(&e2)
                .build_responder()
                .unwrap();
            let mut out = Vec::new();
            let mut m = vec![0u8; 1024];
            let mut p = vec![0u8; 1024];
            for (step, payload) in [b"one".as_slice(), b"two", b"three"].iter().enumerate() {
                let (w, rd) = if step % 2 == 0 {
                    (&mut i, &mut r)
                } else {
                    (&mut r, &mut i)
                };
                let n = w.write_message(payload, &mut m).unwrap();
                let k = rd.read_message(&m[..n], &mut p).unwrap();
                assert_eq!(&p[..k], *payload);
                out.push(m[..n].to_vec());
            }
            let (i, r) = (
                i.into_stateless_transport_mode().unwrap(),
                r.into_stateless_transport_mode().unwrap(),
            );
            let n = i.write_message(9, b"request", &mut m).unwrap();
            out.push(m[..n].to_vec());
            let n = r.write_message(9, b"reply", &mut m).unwrap();
            out.push(m[..n].to_vec());
            out
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn kem_round_trips_and_refuses_garbage() {
        let kem = KemSecret::generate();
        let pk = kem.public_key();
        assert_eq!(pk.len(), KEM_PUBLIC_LEN);
        let (ct, ss) = encapsulate(&pk).unwrap();
        assert_eq!(ct.len(), KEM_CIPHERTEXT_LEN);
        assert_eq!(kem.decapsulate(&ct).unwrap(), ss);
        assert!(kem.decapsulate(&ct[1..]).is_none());
        assert!(encapsulate(&pk[1..]).is_none());
        // Another key decapsulates to something else (implicit rejection of ML-KEM).
        assert_ne!(KemSecret::generate().decapsulate(&ct), Some(ss));
        // An all-zero X25519 half is non-contributory: refused.
        let mut zero = ct.clone();
        zero[KEM_CIPHERTEXT_LEN - 32..].fill(0);
        assert!(kem.decapsulate(&zero).is_none());
    }

    #[test]
    fn low_order_noise_keys_are_refused() {
        let enclave = SecretBytes::random();
        let mut r = responder(b"p", &enclave).unwrap();
        // Message 1 with an all-zero ephemeral key: es is non-contributory.
        let mut m = vec![0u8; 48];
        m[..32].fill(0);
        let mut p = vec![0u8; 64];
        assert!(r.read_message(&m, &mut p).is_err());
    }
}
