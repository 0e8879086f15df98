//! A strict, bounded reader for the subset of BER that AWS KMS emits for
//! `CiphertextForRecipient`: single-byte tags, definite *and indefinite* lengths, constructed
//! OCTET STRINGs split into chunks. The `der` crate refuses indefinite lengths, and a
//! general-purpose BER crate would bring far more than this needs into the enclave.
//!
//! Bounds: input ≤ 16 KiB, nesting ≤ 12, ≤ 256 nodes, lengths ≤ the remaining input.

use super::SealError;

const MAX_INPUT: usize = 16 * 1024;
const MAX_DEPTH: usize = 12;
const MAX_NODES: usize = 256;

/// One decoded element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node<'a> {
    /// The identifier octet (class, constructed bit, tag number < 31).
    pub(crate) tag: u8,
    pub(crate) value: Value<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Primitive(&'a [u8]),
    Constructed(Vec<Node<'a>>),
}

fn bad(what: &'static str) -> SealError {
    SealError::Malformed(what)
}

/// Parses exactly one element filling all of `input`.
pub(crate) fn parse(input: &[u8]) -> Result<Node<'_>, SealError> {
    if input.len() > MAX_INPUT {
        return Err(bad("CMS too large"));
    }
    let mut nodes = 0;
    let (node, rest) = element(input, 0, &mut nodes)?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after CMS"));
    }
    Ok(node)
}

/// Reads one element; returns it and the bytes after it.
fn element<'a>(
    input: &'a [u8],
    depth: usize,
    nodes: &mut usize,
) -> Result<(Node<'a>, &'a [u8]), SealError> {
    *nodes += 1;
    if depth > MAX_DEPTH || *nodes > MAX_NODES {
        return Err(bad("CMS nested too deeply"));
    }
    let (&tag, rest) = input.split_first().ok_or(bad("truncated CMS"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("multi-byte CMS tag"));
    }
    let constructed = tag & 0x20 != 0;
    let (&first, mut rest) = rest.split_first().ok_or(bad("truncated CMS length"))?;
    let length = match first {
        0x80 if constructed => None,
        0x80 => return Err(bad("indefinite length on a primitive")),
        n if n < 0x80 => Some(usize::from(n)),
        n => {
            let count = usize::from(n & 0x7f);
            if count > 4 || rest.len() < count {
                return Err(bad("CMS length"));
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            Some(
                len_bytes
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)),
            )
        }
    };
    match length {
        Some(len) => {
            if len > rest.len() {
                return Err(bad("CMS length beyond input"));
            }
            let (content, after) = rest.split_at(len);
            let value = if constructed {
                let mut children = Vec::new();
                let mut inner = content;
                while !inner.is_empty() {
                    let (child, next) = element(inner, depth + 1, nodes)?;
                    children.push(child);
                    inner = next;
                }
                Value::Constructed(children)
            } else {
                Value::Primitive(content)
            };
            Ok((Node { tag, value }, after))
        }
        None => {
            let mut children = Vec::new();
            let mut inner = rest;
            loop {
                if let [0, 0, after @ ..] = inner {
                    return Ok((
                        Node {
                            tag,
                            value: Value::Constructed(children),
                        },
                        after,
                    ));
                }
                let (child, next) = element(inner, depth + 1, nodes)?;
                children.push(child);
                inner = next;
            }
        }
    }
}

impl<'a> Node<'a> {
    /// The children of a constructed element with this tag.
    pub(crate) fn children(&self, tag: u8, what: &'static str) -> Result<&[Node<'a>], SealError> {
        match &self.value {
            Value::Constructed(c) if self.tag == tag => Ok(c),
            _ => Err(bad(what)),
        }
    }

    /// The content of a primitive element with this tag.
    pub(crate) fn primitive(&self, tag: u8, what: &'static str) -> Result<&'a [u8], SealError> {
        match self.value {
            Value::Primitive(p) if self.tag == tag => Ok(p),
            _ => Err(bad(what)),
        }
    }

    /// The bytes of an OCTET STRING-like element with primitive tag `tag`, either primitive or
    /// constructed (tag | 0x20) from primitive chunks, concatenated.
    pub(crate) fn octets(&self, tag: u8, what: &'static str) -> Result<Vec<u8>, SealError> {
        match &self.value {
            Value::Primitive(p) if self.tag == tag => Ok(p.to_vec()),
            Value::Constructed(chunks) if self.tag == tag | 0x20 => {
                let mut out = Vec::new();
                for c in chunks {
                    out.extend_from_slice(c.primitive(0x04, what)?);
                }
                Ok(out)
            }
            _ => Err(bad(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite_lengths() {
        let definite = [0x30, 0x06, 0x04, 0x01, 0xaa, 0x04, 0x01, 0xbb];
        let indefinite = [0x30, 0x80, 0x04, 0x01, 0xaa, 0x04, 0x01, 0xbb, 0x00, 0x00];
        let a = parse(&definite).unwrap();
        let b = parse(&indefinite).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.children(0x30, "seq").unwrap()[1]
                .primitive(0x04, "o")
                .unwrap(),
            [0xbb]
        );
    }

    #[test]
    fn constructed_octet_strings_are_joined() {
        let chunked = [0x24, 0x80, 0x04, 0x02, 1, 2, 0x04, 0x01, 3, 0x00, 0x00];
        assert_eq!(
            parse(&chunked).unwrap().octets(0x04, "o").unwrap(),
            [1, 2, 3]
        );
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x80],
            &[0x30, 0x80, 0x00],
            &[0x04, 0x80, 0x00, 0x00],
            &[0x04, 0x05, 1, 2],
            &[0x04, 0x85, 1, 1, 1, 1, 1],
            &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x1f, 0x01, 0x00],
            &[0x04, 0x01, 0xaa, 0x00],
        ] {
            assert!(parse(bad).is_err(), "{bad:02x?}");
        }
        let deep: Vec<u8> = std::iter::repeat_n([0x30u8, 0x80], 40).flatten().collect();
        assert!(parse(&deep).is_err());
    }
}
