//! The same storage contract on every backend: create-only puts (the fence), reads, sorted
//! listings, idempotent deletes, refused names. The local directory always; S3 with feature
//! `s3` against the S3-compatible server that `scripts/test` starts (moto).

use vettid_host::storage::Storage;
use vettid_proto::enclave::HostReply;

async fn contract(storage: &Storage, prefix: &str) {
    let name = |n: &str| format!("vaults/{prefix}/log/{n}");
    assert_eq!(
        storage
            .put_create(&name("00000000000000000002"), b"two".to_vec())
            .await,
        HostReply::Created
    );
    assert_eq!(
        storage
            .put_create(&name("00000000000000000001"), b"one".to_vec())
            .await,
        HostReply::Created
    );
    // The fence: a second writer of the same name loses, and the first write is intact.
    assert_eq!(
        storage
            .put_create(&name("00000000000000000001"), b"other".to_vec())
            .await,
        HostReply::AlreadyExists
    );
    assert_eq!(
        storage.get(&name("00000000000000000001")).await,
        HostReply::Object(Some(b"one".to_vec()))
    );
    assert_eq!(
        storage.get(&name("00000000000000000009")).await,
        HostReply::Object(None)
    );
    assert_eq!(
        storage.list(&format!("vaults/{prefix}/log/")).await,
        HostReply::Names(vec![
            name("00000000000000000001"),
            name("00000000000000000002")
        ])
    );
    assert_eq!(
        storage
            .delete(&[name("00000000000000000001"), name("00000000000000000007")])
            .await,
        HostReply::Done
    );
    assert_eq!(
        storage.list(&format!("vaults/{prefix}/log/")).await,
        HostReply::Names(vec![name("00000000000000000002")])
    );
    for bad in [
        "",
        "vaults/../x",
        "etc/passwd",
        "vaults//x",
        "vaults/A",
        "vaults/x/./y",
    ] {
        assert!(
            matches!(storage.get(bad).await, HostReply::Error(_)),
            "{bad:?}"
        );
        assert!(
            matches!(storage.put_create(bad, vec![1]).await, HostReply::Error(_)),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn local_directory_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path().join("objects")).unwrap();
    contract(&storage, "local").await;
    assert!(!dir.path().join("etc").exists());
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_keeps_the_contract() {
    let endpoint = std::env::var("VETTID_TEST_S3_ENDPOINT")
        .expect("feature s3 is tested against an S3-compatible server: run ./scripts/test, which starts one");
    let bucket = std::env::var("VETTID_TEST_S3_BUCKET").expect("VETTID_TEST_S3_BUCKET");
    let storage = Storage::s3(&bucket, Some(&endpoint)).unwrap();
    let prefix = format!("s3-{}", hex_suffix());
    contract(&storage, &prefix).await;
}

#[cfg(feature = "s3")]
fn hex_suffix() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string()
}
