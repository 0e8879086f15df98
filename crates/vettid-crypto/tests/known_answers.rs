//! Known-answer tests typed in from the standards, and negative tests named by failure mode.
//!
//! Where our wrapper can express the vector (Ed25519, X25519, XChaCha20-Poly1305 opening), the
//! test goes through the wrapper; otherwise it checks the primitive the wrapper ships.

use hex_literal::hex;
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use vettid_crypto::agree::{ExchangePublic, ExchangeSecret, NonContributory};
use vettid_crypto::sign::{Signature, SigningKey, VerifyingKey};

// ---------------------------------------------------------------- RFC 8032 §7.1 (Ed25519)

struct Ed25519Vector {
    secret: [u8; 32],
    public: [u8; 32],
    message: &'static [u8],
    signature: [u8; 64],
}

const RFC8032: [Ed25519Vector; 3] = [
    Ed25519Vector {
        secret: hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
        public: hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
        message: &[],
        signature: hex!(
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
    },
    Ed25519Vector {
        secret: hex!("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
        public: hex!("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
        message: &hex!("72"),
        signature: hex!(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
    },
    Ed25519Vector {
        secret: hex!("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"),
        public: hex!("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
        message: &hex!("af82"),
        signature: hex!(
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
        ),
    },
];

#[test]
fn ed25519_rfc8032_section_7_1() {
    for v in &RFC8032 {
        let key = SigningKey::from_seed(&SecretBytes::from_array(v.secret));
        assert_eq!(key.verifying_key().to_bytes(), v.public);
        assert_eq!(key.sign(v.message).to_bytes(), v.signature);
        let public = VerifyingKey::from_bytes(&v.public).unwrap();
        public
            .verify(v.message, &Signature::from_bytes(v.signature))
            .unwrap();
    }
}

#[test]
fn ed25519_flipped_bits_are_refused() {
    let v = &RFC8032[2];
    let public = VerifyingKey::from_bytes(&v.public).unwrap();
    for bit in 0..512 {
        let mut sig = v.signature;
        sig[bit / 8] ^= 1 << (bit % 8);
        assert!(
            public
                .verify(v.message, &Signature::from_bytes(sig))
                .is_err(),
            "bit {bit}"
        );
    }
    assert!(
        public
            .verify(&hex!("af83"), &Signature::from_bytes(v.signature))
            .is_err()
    );
    let other = VerifyingKey::from_bytes(&RFC8032[1].public).unwrap();
    assert!(
        other
            .verify(v.message, &Signature::from_bytes(v.signature))
            .is_err()
    );
}

/// The group order L, little-endian.
const L: [u8; 32] = hex!("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

#[test]
fn ed25519_malleated_signature_s_plus_l_is_refused() {
    for v in &RFC8032 {
        let public = VerifyingKey::from_bytes(&v.public).unwrap();
        let mut sig = v.signature;
        let s: [u8; 32] = sig[32..].try_into().unwrap();
        sig[32..].copy_from_slice(&add_le(&s, &L));
        assert!(
            public
                .verify(v.message, &Signature::from_bytes(sig))
                .is_err()
        );
    }
}

#[test]
fn ed25519_non_canonical_r_is_refused() {
    // R replaced by a non-canonical encoding (y ≥ p) of a point: y = p + 1 encodes the
    // identity, which is also small order; either reason must refuse it.
    let v = &RFC8032[0];
    let public = VerifyingKey::from_bytes(&v.public).unwrap();
    let mut sig = v.signature;
    sig[..32].copy_from_slice(&hex!(
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
    ));
    assert!(
        public
            .verify(v.message, &Signature::from_bytes(sig))
            .is_err()
    );
}

#[test]
fn ed25519_small_order_public_keys_are_refused() {
    for weak in [
        // identity (y = 1)
        hex!("0100000000000000000000000000000000000000000000000000000000000000"),
        // order 2 (y = -1)
        hex!("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        // order 4 (y = 0)
        hex!("0000000000000000000000000000000000000000000000000000000000000000"),
        hex!("0000000000000000000000000000000000000000000000000000000000000080"),
    ] {
        assert!(
            VerifyingKey::from_bytes(&weak).is_err(),
            "{}",
            hex::encode(weak)
        );
    }
    assert!(VerifyingKey::from_slice(&[0u8; 31]).is_err());
    assert!(Signature::from_slice(&[0u8; 63]).is_err());
}

// ---------------------------------------------------------------- RFC 7748 (X25519)

fn x25519(k: [u8; 32], u: [u8; 32]) -> Result<[u8; 32], NonContributory> {
    ExchangeSecret::from_bytes(&SecretBytes::from_array(k))
        .agree(&ExchangePublic::from_bytes(u))
        .map(|s| *s.expose())
}

#[test]
fn x25519_rfc7748_section_5_2() {
    assert_eq!(
        x25519(
            hex!("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4"),
            hex!("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"),
        ),
        Ok(hex!(
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
        ))
    );
    // The u-coordinate has its top bit set: the decoder must mask it (RFC 7748 §5).
    assert_eq!(
        x25519(
            hex!("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d"),
            hex!("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493"),
        ),
        Ok(hex!(
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
        ))
    );
}

#[test]
fn x25519_rfc7748_section_5_2_iterated() {
    let mut k = hex!("0900000000000000000000000000000000000000000000000000000000000000");
    let mut u = k;
    for i in 1..=1000 {
        let next = x25519(k, u).unwrap();
        u = k;
        k = next;
        if i == 1 {
            assert_eq!(
                k,
                hex!("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
            );
        }
    }
    assert_eq!(
        k,
        hex!("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

#[test]
fn x25519_rfc7748_section_6_1() {
    let alice = ExchangeSecret::from_bytes(&SecretBytes::from_array(hex!(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
    )));
    let bob = ExchangeSecret::from_bytes(&SecretBytes::from_array(hex!(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
    )));
    assert_eq!(
        alice.public_key().to_bytes(),
        hex!("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    );
    assert_eq!(
        bob.public_key().to_bytes(),
        hex!("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    );
    let k = hex!("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_eq!(alice.agree(&bob.public_key()).unwrap().expose(), &k);
    assert_eq!(bob.agree(&alice.public_key()).unwrap().expose(), &k);
}

#[test]
fn x25519_low_order_points_give_no_shared_secret() {
    let ours = ExchangeSecret::generate();
    for point in [
        // 0 and 1
        hex!("0000000000000000000000000000000000000000000000000000000000000000"),
        hex!("0100000000000000000000000000000000000000000000000000000000000000"),
        // points of order 8
        hex!("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        hex!("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        // p - 1 (order 2), p (≡ 0), p + 1 (≡ 1)
        hex!("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex!("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        hex!("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ] {
        assert_eq!(
            ours.agree(&ExchangePublic::from_bytes(point)).map(|_| ()),
            Err(NonContributory),
            "{}",
            hex::encode(point)
        );
    }
}

// ---------------------------------------------------------------- AEAD

const LADIES: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
const AEAD_KEY: [u8; 32] = hex!("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
const AEAD_AAD: [u8; 12] = hex!("50515253c0c1c2c3c4c5c6c7");

#[test]
fn chacha20poly1305_rfc8439_section_2_8_2() {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(&AEAD_KEY.into());
    let nonce = hex!("070000004041424344454647");
    let sealed = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: LADIES,
                aad: &AEAD_AAD,
            },
        )
        .unwrap();
    let expect_ct = hex!(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
    );
    let expect_tag = hex!("1ae10b594f09e26a7e902ecbd0600691");
    assert_eq!(&sealed[..LADIES.len()], &expect_ct);
    assert_eq!(&sealed[LADIES.len()..], &expect_tag);
}

const XCHACHA_NONCE: [u8; 24] = hex!("404142434445464748494a4b4c4d4e4f5051525354555657");
const XCHACHA_CT: [u8; 114] = hex!(
    "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
);
const XCHACHA_TAG: [u8; 16] = hex!("c0875924c1c7987947deafd8780acf49");

/// The draft's vector in our sealed layout: nonce ‖ ciphertext ‖ tag.
fn xchacha_sealed() -> Vec<u8> {
    [&XCHACHA_NONCE[..], &XCHACHA_CT[..], &XCHACHA_TAG[..]].concat()
}

fn xchacha_key() -> AeadKey {
    AeadKey::from(SecretBytes::from_array(AEAD_KEY))
}

#[test]
fn xchacha20poly1305_draft_irtf_cfrg_xchacha_a_3_1() {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(&AEAD_KEY.into());
    let sealed = cipher
        .encrypt(
            &XCHACHA_NONCE.into(),
            Payload {
                msg: LADIES,
                aad: &AEAD_AAD,
            },
        )
        .unwrap();
    assert_eq!(sealed, [&XCHACHA_CT[..], &XCHACHA_TAG[..]].concat());
    // And our own `open` reads the same bytes.
    assert_eq!(
        &xchacha_key().open(&AEAD_AAD, &xchacha_sealed()).unwrap()[..],
        LADIES
    );
}

#[test]
fn aead_flipped_tag_is_refused() {
    let mut sealed = xchacha_sealed();
    *sealed.last_mut().unwrap() ^= 1;
    assert!(xchacha_key().open(&AEAD_AAD, &sealed).is_err());
}

#[test]
fn aead_any_flipped_bit_is_refused() {
    let sealed = xchacha_sealed();
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(xchacha_key().open(&AEAD_AAD, &bad).is_err(), "bit {bit}");
    }
}

#[test]
fn aead_wrong_associated_data_is_refused() {
    let sealed = xchacha_sealed();
    assert!(xchacha_key().open(b"", &sealed).is_err());
    assert!(xchacha_key().open(&AEAD_AAD[..11], &sealed).is_err());
    let mut aad = AEAD_AAD;
    aad[0] ^= 0x80;
    assert!(xchacha_key().open(&aad, &sealed).is_err());
}

#[test]
fn aead_truncated_ciphertext_is_refused() {
    let sealed = xchacha_sealed();
    for len in 0..sealed.len() {
        assert!(
            xchacha_key().open(&AEAD_AAD, &sealed[..len]).is_err(),
            "len {len}"
        );
    }
}

#[test]
fn aead_wrong_key_is_refused() {
    assert!(
        AeadKey::generate()
            .open(&AEAD_AAD, &xchacha_sealed())
            .is_err()
    );
}

#[test]
fn aead_seal_round_trips_with_fresh_nonces() {
    let key = AeadKey::generate();
    let a = key.seal(b"name/1", b"payload");
    let b = key.seal(b"name/1", b"payload");
    assert_ne!(a, b, "nonces must be fresh");
    assert_eq!(a.len(), b"payload".len() + vettid_crypto::aead::OVERHEAD);
    assert_eq!(&key.open(b"name/1", &a).unwrap()[..], b"payload");
    assert_eq!(
        &key.open(b"name/1", &key.seal(b"name/1", b"")).unwrap()[..],
        b""
    );
}

// ---------------------------------------------------------------- RFC 5869 (HKDF-SHA256)

#[test]
fn hkdf_sha256_rfc5869_appendix_a() {
    use hkdf::Hkdf;
    use sha2::Sha256;
    let a2_ikm: Vec<u8> = (0x00..=0x4f).collect();
    let a2_salt: Vec<u8> = (0x60..=0xaf).collect();
    let a2_info: Vec<u8> = (0xb0..=0xff).collect();
    // (IKM, salt, info, PRK, OKM)
    type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], &'a [u8], &'a [u8]);
    let cases: [Case; 3] = [
        (
            &hex!("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            &hex!("000102030405060708090a0b0c"),
            &hex!("f0f1f2f3f4f5f6f7f8f9"),
            &hex!("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"),
            &hex!(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
            ),
        ),
        (
            &a2_ikm,
            &a2_salt,
            &a2_info,
            &hex!("06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244"),
            &hex!(
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"
            ),
        ),
        (
            &hex!("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            &[],
            &[],
            &hex!("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"),
            &hex!(
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
            ),
        ),
    ];
    for (ikm, salt, info, prk, okm) in cases {
        let (got_prk, hk) = Hkdf::<Sha256>::extract(Some(salt), ikm);
        assert_eq!(&got_prk[..], prk);
        let mut out = vec![0u8; okm.len()];
        hk.expand(info, &mut out).unwrap();
        assert_eq!(out, okm);
    }
}

// ---------------------------------------------------------------- RFC 9106 §5.3 (Argon2id)

#[test]
fn argon2id_rfc9106_section_5_3() {
    use argon2::{Algorithm, Argon2, AssociatedData, ParamsBuilder, Version};
    let params = ParamsBuilder::new()
        .m_cost(32)
        .t_cost(3)
        .p_cost(4)
        .output_len(32)
        .data(AssociatedData::new(&[0x04; 12]).unwrap())
        .build()
        .unwrap();
    let argon =
        Argon2::new_with_secret(&[0x03; 8], Algorithm::Argon2id, Version::V0x13, params).unwrap();
    let mut tag = [0u8; 32];
    argon
        .hash_password_into(&[0x01; 32], &[0x02; 16], &mut tag)
        .unwrap();
    assert_eq!(
        tag,
        hex!("0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659")
    );
}

#[test]
fn aead_open_owned_matches_open() {
    let sealed = xchacha_sealed();
    assert_eq!(
        &xchacha_key().open_owned(&AEAD_AAD, sealed.clone()).unwrap()[..],
        LADIES
    );
    for bit in (0..sealed.len() * 8).step_by(7) {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            xchacha_key().open_owned(&AEAD_AAD, bad).is_err(),
            "bit {bit}"
        );
    }
    for len in 0..sealed.len() {
        assert!(
            xchacha_key()
                .open_owned(&AEAD_AAD, sealed[..len].to_vec())
                .is_err(),
            "len {len}"
        );
    }
    assert!(xchacha_key().open_owned(b"", sealed).is_err());
}
