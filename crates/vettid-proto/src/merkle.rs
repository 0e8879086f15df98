//! Merkle trees as RFC 6962 §2.1 (and RFC 9162 §2.1) define them, over SHA-256: what a
//! published set of ballots commits to, and the proof that one ballot is in it.
//!
//! Leaves and interior nodes are hashed with different prefixes (`0x00`, `0x01`), so no leaf
//! can pass for a node; a tree of `n` leaves splits at the largest power of two below `n`, so
//! an odd node is never paired with itself (the original system did both wrong: one hash
//! function for both, and a lone node paired with itself, which lets two different ballot
//! lists share a root).

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(leaf)
        .finalize()
        .into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The largest power of two smaller than `n` (`n` ≥ 2): where a tree of `n` leaves splits.
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The tree head over these leaf hashes (`MTH`); the empty tree's is SHA-256 of nothing.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The inclusion proof of leaf `index` (`PATH(m, D[n])`): sibling hashes from the leaf up.
/// `None` if there is no such leaf.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(leaves, index, &mut proof);
    Some(proof)
}

fn path(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        path(&leaves[..k], index, out);
        out.push(root(&leaves[k..]));
    } else {
        path(&leaves[k..], index - k, out);
        out.push(root(&leaves[..k]));
    }
}

/// Whether `proof` shows that `leaf` (a leaf hash) is leaf `index` of the tree of `size`
/// leaves whose head is `root` (RFC 9162 §2.1.3.2). Another index, leaf, proof or root — a
/// proof one hash too long or too short included — is `false`. The size is *not* proven by
/// the path (leaf 0 of 3 has the same path shape as leaf 0 of 4): it must come with the root
/// from one signed statement, as a tree head does.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The Certificate Transparency reference inputs and the tree heads of sizes 0..=8.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn tree_heads_match_the_rfc_6962_reference_for_every_size() {
        let leaves = reference();
        for n in 0..=8 {
            assert_eq!(root(&leaves[..n]), h(ROOTS[n]), "size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference_and_verify() {
        let leaves = reference();
        let cases: [(usize, usize, &[&str]); 3] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
        ];
        for (index, size, expected) in cases {
            let proof = inclusion_proof(&leaves[..size], index).unwrap();
            let expected: Vec<Hash> = expected.iter().map(|s| h(s)).collect();
            assert_eq!(proof, expected, "leaf {index} of {size}");
            assert!(verify_inclusion(
                &leaves[index],
                index as u64,
                size as u64,
                &proof,
                &h(ROOTS[size])
            ));
        }
    }

    #[test]
    fn every_proof_verifies_in_every_shape_and_nothing_else_does() {
        let leaves: Vec<Hash> = (0u16..41).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let head = root(tree);
            for i in 0..n {
                let proof = inclusion_proof(tree, i).unwrap();
                let (iu, nu) = (i as u64, n as u64);
                assert!(
                    verify_inclusion(&tree[i], iu, nu, &proof, &head),
                    "{i} of {n}"
                );
                // Another leaf, index, size or root; a proof shortened, lengthened or changed.
                assert!(!verify_inclusion(&tree[(i + 1) % n], iu, nu, &proof, &head) || n == 1);
                assert!(!verify_inclusion(&tree[i], iu + 1, nu, &proof, &head));
                // (Another size can pass with the same root for a leaf in a left part: the
                // size is not proven by the path, which is why it is signed with the root.)
                assert!(!verify_inclusion(&tree[i], iu, nu, &proof, &[0; 32]));
                if let Some((_, shorter)) = proof.split_last() {
                    assert!(!verify_inclusion(&tree[i], iu, nu, shorter, &head));
                    let mut changed = proof.clone();
                    changed[0][0] ^= 1;
                    assert!(!verify_inclusion(&tree[i], iu, nu, &changed, &head));
                }
                let mut longer = proof.clone();
                longer.push([7; 32]);
                assert!(!verify_inclusion(&tree[i], iu, nu, &longer, &head));
            }
            assert!(inclusion_proof(tree, n).is_none());
        }
    }

    #[test]
    fn a_leaf_cannot_pass_for_a_node_nor_a_lone_node_pair_with_itself() {
        let leaves = reference();
        // Two leaves whose bytes are the two node hashes below a root do not make that root.
        let (l, r) = (root(&leaves[..4]), root(&leaves[4..8]));
        let forged = leaf_hash(&[l, r].concat());
        assert_ne!(forged, root(&leaves[..8]));
        // Three leaves: the third is not paired with itself (the original's tree), so the list
        // with the last ballot repeated has another root.
        let three = root(&leaves[..3]);
        let four = root(&[leaves[0], leaves[1], leaves[2], leaves[2]]);
        assert_ne!(three, four);
        assert_eq!(
            three,
            node_hash(&node_hash(&leaves[0], &leaves[1]), &leaves[2])
        );
    }
}
