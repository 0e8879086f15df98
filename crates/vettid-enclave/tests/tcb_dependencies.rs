//! The enclave's dependency tree stays free of network, storage and cloud stacks
//! (DESIGN.md §2): a dependency added by mistake fails this test, not a review.

use std::process::Command;

/// Crates that must never be in the enclave's normal dependency tree, by name or name prefix.
/// rustls is in (TLS to the key service ends inside the enclave), with the `ring` provider
/// only: not aws-lc (a second, C-heavy crypto library), not the platform's or Mozilla's roots
/// (the key service's roots come from the measured configuration), no async runtime.
const FORBIDDEN: &[&str] = &[
    "async-nats",
    "axum",
    "hyper",
    "reqwest",
    "object_store",
    "aws-sdk-",
    "aws-config",
    "aws-lc-",
    "rustls-native-certs",
    "rustls-platform-verifier",
    "webpki-roots",
    "tokio",
    "sqlx",
    "tower-http",
];

fn tree(features: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "vettid-enclave",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}"])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn assert_clean(crates: &[String]) {
    assert!(
        crates.iter().any(|c| c == "vettid-enclave"),
        "tree output not understood: {crates:?}"
    );
    let bad: Vec<_> = crates
        .iter()
        .filter(|c| {
            FORBIDDEN
                .iter()
                .any(|f| c.as_str() == *f || (f.ends_with('-') && c.starts_with(f)))
        })
        .collect();
    assert!(bad.is_empty(), "the enclave depends on {bad:?}");
}

#[test]
fn default_features_pull_no_network_storage_or_cloud_crate() {
    assert_clean(&tree(&[]));
}

#[test]
fn all_features_pull_no_network_storage_or_cloud_crate() {
    assert_clean(&tree(&["--all-features"]));
}
