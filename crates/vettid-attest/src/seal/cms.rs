//! CMS EnvelopedData (RFC 5652 §6) as AWS KMS returns it in `CiphertextForRecipient`:
//! one KeyTransRecipientInfo with RSAES-OAEP (SHA-256, MGF1-SHA-256) wrapping an AES-256-CBC
//! content key. Everything else is refused.

use super::SealError;
use super::ber::{self, Node};

/// `id-envelopedData` 1.2.840.113549.1.7.3
pub(crate) const OID_ENVELOPED_DATA: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
/// `id-data` 1.2.840.113549.1.7.1
pub(crate) const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
/// `id-RSAES-OAEP` 1.2.840.113549.1.1.7
pub(crate) const OID_RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
/// `aes256-CBC` 2.16.840.1.101.3.4.1.42
pub(crate) const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
/// RSAES-OAEP-params { hashAlgorithm sha256, maskGenAlgorithm mgf1(sha256) }, DER, as KMS sends it.
pub(crate) const OAEP_SHA256_PARAMS: &[u8] = &[
    0x30, 0x2f, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00,
];

const SEQ: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INT: u8 = 0x02;
const OCTETS: u8 = 0x04;

/// What a recipient needs from the EnvelopedData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// The RSA-OAEP-encrypted AES-256 content key.
    pub(crate) encrypted_key: Vec<u8>,
    /// AES-CBC initialisation vector (16 bytes).
    pub(crate) iv: [u8; 16],
    /// AES-256-CBC ciphertext with PKCS#7 padding.
    pub(crate) ciphertext: Vec<u8>,
}

fn bad(what: &'static str) -> SealError {
    SealError::Malformed(what)
}

fn expect_oid(node: &Node<'_>, oid: &[u8], what: &'static str) -> Result<(), SealError> {
    if node.primitive(OID, what)? == oid {
        Ok(())
    } else {
        Err(bad(what))
    }
}

/// Re-encodes a parsed node as DER, to compare algorithm parameters byte for byte.
fn der(node: &Node<'_>) -> Vec<u8> {
    let content = match &node.value {
        ber::Value::Primitive(p) => p.to_vec(),
        ber::Value::Constructed(children) => children.iter().flat_map(der).collect(),
    };
    tlv(node.tag, &content)
}

/// A definite-length TLV (DER form).
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Parses a ContentInfo holding EnvelopedData for one RSA-OAEP-SHA256 recipient.
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, SealError> {
    let root = ber::parse(bytes)?;
    let [content_type, content] = root.children(SEQ, "ContentInfo")? else {
        return Err(bad("ContentInfo"));
    };
    expect_oid(
        content_type,
        OID_ENVELOPED_DATA,
        "content type is not envelopedData",
    )?;
    let [enveloped] = content.children(0xa0, "ContentInfo content")? else {
        return Err(bad("ContentInfo content"));
    };
    let fields = enveloped.children(SEQ, "EnvelopedData")?;
    // version, recipientInfos, encryptedContentInfo (no originatorInfo, no unprotectedAttrs)
    let [version, recipients, encrypted] = fields else {
        return Err(bad("EnvelopedData fields"));
    };
    if !matches!(version.primitive(INT, "EnvelopedData version")?, [0] | [2]) {
        return Err(bad("EnvelopedData version"));
    }
    let [recipient] = recipients.children(SET, "RecipientInfos")? else {
        return Err(bad("exactly one recipient expected"));
    };
    let [ri_version, rid, key_alg, encrypted_key] =
        recipient.children(SEQ, "KeyTransRecipientInfo")?
    else {
        return Err(bad("KeyTransRecipientInfo"));
    };
    // The recipient identifier is informational (the RSA decryption decides), but it must be
    // one of the two forms RFC 5652 allows.
    let rid_ok = match rid.tag {
        0x80 => (1..=64).contains(&rid.primitive(0x80, "recipient identifier")?.len()),
        SEQ => rid.children(SEQ, "recipient identifier").is_ok(),
        _ => false,
    };
    if !rid_ok {
        return Err(bad("recipient identifier"));
    }
    if !matches!(ri_version.primitive(INT, "recipient version")?, [0] | [2]) {
        return Err(bad("recipient version"));
    }
    let [alg, params] = key_alg.children(SEQ, "key encryption algorithm")? else {
        return Err(bad("key encryption algorithm"));
    };
    expect_oid(alg, OID_RSAES_OAEP, "key encryption is not RSAES-OAEP")?;
    if der(params) != OAEP_SHA256_PARAMS {
        return Err(bad("RSAES-OAEP parameters are not SHA-256/MGF1-SHA-256"));
    }
    let encrypted_key = encrypted_key.primitive(OCTETS, "encrypted key")?.to_vec();
    if !(128..=1024).contains(&encrypted_key.len()) {
        return Err(bad("encrypted key length"));
    }

    let [ct_type, ct_alg, ct] = encrypted.children(SEQ, "EncryptedContentInfo")? else {
        return Err(bad("EncryptedContentInfo"));
    };
    expect_oid(ct_type, OID_DATA, "encrypted content type is not data")?;
    let [cipher, iv] = ct_alg.children(SEQ, "content encryption algorithm")? else {
        return Err(bad("content encryption algorithm"));
    };
    expect_oid(
        cipher,
        OID_AES256_CBC,
        "content encryption is not AES-256-CBC",
    )?;
    let iv: [u8; 16] = iv
        .primitive(OCTETS, "AES-CBC IV")?
        .try_into()
        .map_err(|_| bad("AES-CBC IV length"))?;
    // [0] IMPLICIT OCTET STRING: primitive 0x80, or constructed 0xa0 of OCTET STRING chunks.
    let ciphertext = ct.octets(0x80, "encrypted content")?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 || ciphertext.len() > 4096 {
        return Err(bad("encrypted content length"));
    }
    Ok(Envelope {
        encrypted_key,
        iv,
        ciphertext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `CiphertextForRecipient` returned by AWS KMS (BER, indefinite lengths), as
    /// published in a public RustCrypto/formats issue (#779) about parsing it. Its RSA key is
    /// not known, so only the structure is checked here.
    const KMS_SAMPLE: &str = "308006092a864886f70d010703a08030800201023182016b308201670201028020710d335fec8e74647c098c28bf4e5709b1d595fc9d4f81e88d3202ebe7fb6997303c06092a864886f70d010107302fa00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d060960864801650304020105000482010029cffeb1322f4f82b818c7aaef2fe20fe54dc6ddbf75e25dc0e99dddc55ef622864dedb8b920b8011c9343e71d56ccb08aba22dc35ba18defefbe8d699702717a43fc6b67fb45fb0440854dd0e43b9f312843fedb803d17c614a7601ae960cf47a49fdfe28099a4b2f5a222c20a8b8d3fe04138d804ff407d152da620990b12d36c04644edd2c02b3e245e7fdfa5b48c572a9b567db4fca4e69c0fca2bad0559e37dd46a302d18e393880540b7c3dc08134ba42122b1a989a12c8f856e6978092eba510b37d6c2afed9cbe5eb6f9c52c64ea0f12557c90873d6f67829dfd79303dfca325fe8fdf71c027d90786e94a8f5c02e4dfb720f4907dedbdadd9221103308006092a864886f70d010701301d060960864801650304012a041037343df1470df625eeb6f4bfd2f1acc3a0800410cc74adf65d973c8b72cd51e1b927f0f000000000000000000000";

    #[test]
    fn parses_a_real_kms_ciphertext_for_recipient() {
        let bytes = hex::decode(KMS_SAMPLE).unwrap();
        let env = parse(&bytes).unwrap();
        assert_eq!(env.encrypted_key.len(), 256);
        assert_eq!(hex::encode(env.iv), "37343df1470df625eeb6f4bfd2f1acc3");
        assert_eq!(
            hex::encode(&env.ciphertext),
            "cc74adf65d973c8b72cd51e1b927f0f0"
        );
    }

    #[test]
    fn every_truncation_of_the_kms_sample_is_refused() {
        let bytes = hex::decode(KMS_SAMPLE).unwrap();
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        let bytes = hex::decode(KMS_SAMPLE).unwrap();
        let swap = |from: &[u8], to: &[u8]| {
            let hex = hex::encode(&bytes).replacen(&hex::encode(from), &hex::encode(to), 1);
            hex::decode(hex).unwrap()
        };
        // RSAES-OAEP → rsaEncryption (PKCS#1 v1.5), same length OID.
        let pkcs1 = swap(
            OID_RSAES_OAEP,
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
        );
        assert!(parse(&pkcs1).is_err());
        // AES-256-CBC → AES-128-CBC.
        let aes128 = swap(
            OID_AES256_CBC,
            &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02],
        );
        assert!(parse(&aes128).is_err());
    }
}
