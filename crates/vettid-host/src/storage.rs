//! The object store behind the enclave: a local directory by default, S3 (feature `s3`) by
//! configuration. It stores only what the enclave gives it, already encrypted; it enforces
//! create-only writes (`PutMode::Create`: a local hard link, or S3's `If-None-Match: *`), which
//! is what fences concurrent writers.

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vettid_proto::enclave::HostReply;

/// The object store.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// For a local directory: its root, to fsync what was written.
    local_root: Option<PathBuf>,
    /// Directories under the root whose own entry is durable (synced in their parent by this
    /// process, or the root itself): a write into one of them needs only the file and its
    /// directory synced.
    durable_dirs: Arc<Mutex<HashSet<PathBuf>>>,
}

/// Whether `name` is a name the enclave may use: `vaults/…`, a–z 0–9 `-` `/`, no empty or dot
/// segments, at most 256 bytes.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 256
        && name.starts_with("vaults/")
        && name.split('/').all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn error(e: impl std::fmt::Display) -> HostReply {
    HostReply::Error(format!("storage: {e}"))
}

/// Makes a newly created file durable: its data and its entry in its directory (two fsyncs),
/// and — only the first time this process writes into a directory — that directory's entry in
/// its parent, up to the first directory already durable. On ext4 and xfs `fsync` of a file
/// makes its data and inode durable but not the name that links it; `fsync` of the directory
/// makes that name durable, and a directory's own name lives in its parent, so a parent needs
/// a sync only when one of its entries is new. Directories that existed before this process
/// started are synced once more by its first write into them (their creator may have died
/// before syncing).
fn sync_new(path: &Path, durable: &Mutex<HashSet<PathBuf>>) -> std::io::Result<()> {
    sync_new_with(path, durable, &mut |p| std::fs::File::open(p)?.sync_all())
}

/// [`sync_new`] with the fsync given (tests count them).
fn sync_new_with(
    path: &Path,
    durable: &Mutex<HashSet<PathBuf>>,
    sync: &mut dyn FnMut(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    sync(path)?;
    let mut dir = path.parent();
    if let Some(d) = dir {
        sync(d)?;
    }
    let known = |d: &Path| durable.lock().is_ok_and(|set| set.contains(d));
    let mut fresh = Vec::new();
    while let Some(d) = dir {
        if known(d) {
            // Every directory synced on the way is durable only now, the whole chain up to
            // a durable one: another writer that finds one of them known may stop there.
            if let Ok(mut set) = durable.lock() {
                set.extend(fresh);
            }
            return Ok(());
        }
        let Some(parent) = d.parent() else { break };
        sync(parent)?;
        fresh.push(d.to_path_buf());
        dir = Some(parent);
    }
    Ok(())
}

impl Storage {
    /// Objects under `root` (created if missing).
    pub fn local(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let root = std::fs::canonicalize(&root)?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(std::io::Error::other)?;
        // The root's own entry and its ancestors' (`create_dir_all` may have made several),
        // once: every directory below is then made durable by the first write into it (see
        // `sync_new`).
        for dir in root.ancestors().skip(1) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(Self {
            store: Arc::new(store),
            durable_dirs: Arc::new(Mutex::new(HashSet::from([root.clone()]))),
            local_root: Some(root),
        })
    }

    /// Objects in an S3 bucket. Credentials and region come from the usual `AWS_*`
    /// environment; `endpoint` selects an S3-compatible server (path-style, http allowed).
    #[cfg(feature = "s3")]
    pub fn s3(bucket: &str, endpoint: Option<&str>) -> std::io::Result<Self> {
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
        let store = builder.build().map_err(std::io::Error::other)?;
        Ok(Self {
            store: Arc::new(store),
            local_root: None,
            durable_dirs: Arc::default(),
        })
    }

    /// Reads an object.
    pub async fn get(&self, name: &str) -> HostReply {
        if !valid_name(name) {
            return HostReply::Error("invalid object name".into());
        }
        if let Some(root) = &self.local_root {
            // One read from the page cache; object_store's local reader streams in small pieces.
            return match tokio::fs::read(root.join(name)).await {
                Ok(bytes) => HostReply::Object(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostReply::Object(None),
                Err(e) => error(e),
            };
        }
        match self.store.get(&ObjectPath::from(name)).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => HostReply::Object(Some(b.to_vec())),
                Err(e) => error(e),
            },
            Err(object_store::Error::NotFound { .. }) => HostReply::Object(None),
            Err(e) => error(e),
        }
    }

    /// Creates an object if its name is free, and makes it durable (file and directory
    /// fsynced) before answering.
    pub async fn put_create(&self, name: &str, bytes: Vec<u8>) -> HostReply {
        if !valid_name(name) {
            return HostReply::Error("invalid object name".into());
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&ObjectPath::from(name), PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => {
                let Some(root) = &self.local_root else {
                    // S3 acknowledges a put only once it is durable.
                    return HostReply::Created;
                };
                let path = root.join(name);
                let durable = self.durable_dirs.clone();
                let synced = tokio::task::spawn_blocking(move || sync_new(&path, &durable)).await;
                match synced {
                    Ok(Ok(())) => HostReply::Created,
                    Ok(Err(e)) => error(e),
                    Err(e) => error(e),
                }
            }
            Err(object_store::Error::AlreadyExists { .. }) => HostReply::AlreadyExists,
            Err(e) => error(e),
        }
    }

    /// Names under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> HostReply {
        use futures::TryStreamExt;
        if !valid_name(prefix.trim_end_matches('/')) {
            return HostReply::Error("invalid prefix".into());
        }
        let listed: Result<Vec<_>, _> = self
            .store
            .list(Some(&ObjectPath::from(prefix)))
            .try_collect()
            .await;
        match listed {
            Ok(metas) => {
                let mut names: Vec<String> =
                    metas.into_iter().map(|m| m.location.to_string()).collect();
                names.sort();
                HostReply::Names(names)
            }
            Err(e) => error(e),
        }
    }

    /// Deletes objects; missing ones are fine.
    pub async fn delete(&self, names: &[String]) -> HostReply {
        for name in names {
            if !valid_name(name) {
                return HostReply::Error("invalid object name".into());
            }
            match self.store.delete(&ObjectPath::from(name.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return error(e),
            }
        }
        HostReply::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fsyncs one created object costs: its file and directory, plus each new directory's
    /// parent the first time, never more.
    #[tokio::test]
    async fn a_write_syncs_its_file_and_directory_and_a_new_directory_once() {
        let t = tempfile::tempdir().unwrap();
        let storage = Storage::local(t.path().join("objects")).unwrap();
        let root = storage.local_root.clone().unwrap();
        let base = root.parent().unwrap().to_path_buf();
        let mut synced = Vec::new();
        // A create, its fsyncs recorded; `fail` makes the sync of that path fail.
        let mut put_failing = |name: &str, fail: Option<&str>| {
            synced.clear();
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
            let r = sync_new_with(&path, &storage.durable_dirs, &mut |p| {
                let p = p.strip_prefix(&base).unwrap().to_path_buf();
                synced.push(p.clone());
                if fail.is_some_and(|f| p == Path::new(f)) {
                    return Err(std::io::Error::other("disk"));
                }
                Ok(())
            });
            (r.is_ok(), synced.clone())
        };
        // A sync that fails on the way up leaves no directory marked durable: the next write
        // into the same directory syncs the whole chain again.
        let (ok, _) = put_failing("vaults/c/log/1", Some("objects/vaults"));
        assert!(!ok);
        let (ok, chain) = put_failing("vaults/c/log/2", None);
        assert!(ok);
        assert_eq!(chain.len(), 5, "{chain:?}");
        let mut put = |name: &str| put_failing(name, None).1;
        let p = |s: &str| PathBuf::from(s);
        // `vaults` is durable now (vault c's chain reached the root): another vault's first
        // write syncs up to it.
        assert_eq!(
            put("vaults/a/log/1"),
            [
                p("objects/vaults/a/log/1"),
                p("objects/vaults/a/log"),
                p("objects/vaults/a"),
                p("objects/vaults"),
            ]
        );
        assert_eq!(
            put("vaults/a/log/2"),
            [p("objects/vaults/a/log/2"), p("objects/vaults/a/log")]
        );
        // A new directory beside known ones: its parent once, then the floor.
        assert_eq!(
            put("vaults/a/snap/1"),
            [
                p("objects/vaults/a/snap/1"),
                p("objects/vaults/a/snap"),
                p("objects/vaults/a"),
            ]
        );
        assert_eq!(
            put("vaults/a/snap/2"),
            [p("objects/vaults/a/snap/2"), p("objects/vaults/a/snap")]
        );
        // The real store agrees: the object is there and readable.
        assert!(matches!(
            storage.put_create("vaults/b/log/1", b"y".to_vec()).await,
            HostReply::Created
        ));
        assert!(matches!(
            storage.get("vaults/b/log/1").await,
            HostReply::Object(Some(b)) if b == b"y"
        ));
    }
}
