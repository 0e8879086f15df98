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

/// Temporary files of [`create_local`] carry this in their name (never in an object's name,
/// [`valid_name`]), so that listings skip them.
const TEMPORARY: char = '#';

/// Creates object `name` under `root` only if the name is free, durably: the bytes go to a
/// temporary file beside it, which is fsynced and then hard-linked to the name (the link fails
/// if the name exists — create-only — and a crash leaves the whole object or none), the
/// temporary name is removed, and the directory is fsynced ([`sync_dirs_with`]): two fsyncs
/// for a write into a known directory. `Ok(false)`: the name was taken, nothing changed (and
/// the name that took it is durable before this says so: the taker may not have synced yet).
fn create_local(
    root: &Path,
    name: &str,
    bytes: &[u8],
    durable: &Mutex<HashSet<PathBuf>>,
) -> std::io::Result<bool> {
    use std::io::Write;
    let path = root.join(name);
    let (Some(dir), Some(file)) = (path.parent(), path.file_name().and_then(|f| f.to_str())) else {
        return Err(std::io::Error::other("not an object path"));
    };
    let (tmp, mut f) = temporary(dir, file)?;
    let linked = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::hard_link(&tmp, &path));
    drop(f);
    let _ = std::fs::remove_file(&tmp);
    let created = match linked {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    sync_dirs_with(dir, durable, &mut |p| std::fs::File::open(p)?.sync_all())?;
    Ok(created)
}

/// A new temporary file in `dir` (made if missing) for object file `file`: a name no other
/// writer picks (process id, a number per process, a random number per process run; another
/// try if one is taken anyway, say a leftover of a crash).
fn temporary(dir: &Path, file: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let run = *RUN.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let mut last = None;
    for _ in 0..4 {
        let tmp = dir.join(format!(
            "{file}{TEMPORARY}{}-{run:016x}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
        };
        let opened = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                open()
            }
            other => other,
        };
        match opened {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name")))
}

/// Removes the files at `paths` (missing ones are fine) and makes that durable: each
/// directory they were in is fsynced once.
fn delete_local(paths: &[PathBuf]) -> std::io::Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    dirs.insert(dir.to_path_buf());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for dir in dirs {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes what a crash left of [`create_local`] under `dir`: temporary files (one linked
/// already is a second name for an object's bytes, which a delete would not reach).
fn sweep_temporaries(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sweep_temporaries(&entry.path())?;
        } else if entry.file_name().to_string_lossy().contains(TEMPORARY) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The names of the entries under `dir` that are not directories (recursively), each as
/// `rel/…`, skipping temporary files; a missing directory has none.
fn list_local(dir: &Path, rel: &str, names: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.contains(TEMPORARY) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            list_local(&entry.path(), &format!("{rel}/{name}"), names)?;
        } else {
            // Anything else under an object's name shows (a planted link or pipe is then
            // refused by `get`, not hidden).
            names.push(format!("{rel}/{name}"));
        }
    }
    Ok(())
}

fn error(e: impl std::fmt::Display) -> HostReply {
    HostReply::Error(format!("storage: {e}"))
}

/// Makes new entries in `dir` durable: `dir` is fsynced and — only the first time this process
/// writes into a directory — that directory's entry in its parent, up to the first directory
/// already durable. On ext4 and xfs `fsync` of a file makes its data and inode durable but not
/// the name that links it; `fsync` of the directory makes that name durable, and a
/// directory's own name lives in its parent, so a parent needs a sync only when one of its
/// entries is new. Directories that existed before this process started are synced once more
/// by its first write into them (their creator may have died before syncing). `sync` is the
/// fsync (tests count them).
fn sync_dirs_with(
    dir: &Path,
    durable: &Mutex<HashSet<PathBuf>>,
    sync: &mut dyn FnMut(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    sync(dir)?;
    let mut dir = Some(dir);
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
        // `sync_dirs_with`).
        for dir in root.ancestors().skip(1) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        sweep_temporaries(&root)?;
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
            // Only a regular file is an object (a planted link or pipe is an error, and a
            // pipe would block the read).
            let path = root.join(name);
            match tokio::fs::symlink_metadata(&path).await {
                Ok(m) if !m.file_type().is_file() => return error("not a regular file"),
                _ => {}
            }
            return match tokio::fs::read(path).await {
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
        if let Some(root) = &self.local_root {
            let (root, name, durable) = (root.clone(), name.to_owned(), self.durable_dirs.clone());
            let created =
                tokio::task::spawn_blocking(move || create_local(&root, &name, &bytes, &durable))
                    .await;
            return match created {
                Ok(Ok(true)) => HostReply::Created,
                Ok(Ok(false)) => HostReply::AlreadyExists,
                Ok(Err(e)) => error(e),
                Err(e) => error(e),
            };
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
            // S3 acknowledges a put only once it is durable.
            Ok(_) => HostReply::Created,
            Err(object_store::Error::AlreadyExists { .. }) => HostReply::AlreadyExists,
            Err(e) => error(e),
        }
    }

    /// Names under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> HostReply {
        use futures::TryStreamExt;
        let base = prefix.trim_end_matches('/');
        if !valid_name(base) {
            return HostReply::Error("invalid prefix".into());
        }
        if let Some(root) = &self.local_root {
            let (dir, base) = (root.join(base), base.to_owned());
            let listed = tokio::task::spawn_blocking(move || {
                let mut names = Vec::new();
                list_local(&dir, &base, &mut names).map(|()| names)
            })
            .await;
            return match listed {
                Ok(Ok(mut names)) => {
                    names.sort();
                    HostReply::Names(names)
                }
                Ok(Err(e)) => error(e),
                Err(e) => error(e),
            };
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
        if names.iter().any(|n| !valid_name(n)) {
            return HostReply::Error("invalid object name".into());
        }
        if let Some(root) = &self.local_root {
            let paths: Vec<PathBuf> = names.iter().map(|n| root.join(n)).collect();
            let deleted = tokio::task::spawn_blocking(move || delete_local(&paths)).await;
            return match deleted {
                Ok(Ok(())) => HostReply::Done,
                Ok(Err(e)) => error(e),
                Err(e) => error(e),
            };
        }
        for name in names {
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

    /// The directory fsyncs one created object costs (its file's own fsync is the other):
    /// its directory, plus each new directory's parent the first time, never more.
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
            let r = sync_dirs_with(path.parent().unwrap(), &storage.durable_dirs, &mut |p| {
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
        assert_eq!(chain.len(), 4, "{chain:?}");
        let mut put = |name: &str| put_failing(name, None).1;
        let p = |s: &str| PathBuf::from(s);
        // `vaults` is durable now (vault c's chain reached the root): another vault's first
        // write syncs up to it.
        assert_eq!(
            put("vaults/a/log/1"),
            [
                p("objects/vaults/a/log"),
                p("objects/vaults/a"),
                p("objects/vaults"),
            ]
        );
        assert_eq!(put("vaults/a/log/2"), [p("objects/vaults/a/log")]);
        // A new directory beside known ones: its parent once, then the floor.
        assert_eq!(
            put("vaults/a/snap/1"),
            [p("objects/vaults/a/snap"), p("objects/vaults/a")]
        );
        assert_eq!(put("vaults/a/snap/2"), [p("objects/vaults/a/snap")]);
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

    /// Creates are create-only and whole: a taken name is refused and keeps its bytes; a
    /// listing shows objects only (no temporary file, even one a crash left), sorted, and
    /// nothing for a directory that does not exist.
    #[tokio::test]
    async fn a_create_is_create_only_and_listings_show_whole_objects_only() {
        let t = tempfile::tempdir().unwrap();
        let storage = Storage::local(t.path().join("objects")).unwrap();
        let root = storage.local_root.clone().unwrap();
        for n in ["2", "1", "10"] {
            assert!(matches!(
                storage
                    .put_create(&format!("vaults/v/log/{n}"), n.as_bytes().to_vec())
                    .await,
                HostReply::Created
            ));
        }
        assert!(matches!(
            storage
                .put_create("vaults/v/log/1", b"other".to_vec())
                .await,
            HostReply::AlreadyExists
        ));
        assert!(matches!(
            storage.get("vaults/v/log/1").await,
            HostReply::Object(Some(b)) if b == b"1"
        ));
        // What a crash between the temporary file and its link leaves behind.
        std::fs::write(root.join("vaults/v/log/3#999-0"), b"partial").unwrap();
        std::fs::create_dir_all(root.join("vaults/v/snap")).unwrap();
        std::fs::write(root.join("vaults/v/snap/1"), b"s").unwrap();
        let HostReply::Names(names) = storage.list("vaults/v/log/").await else {
            panic!("no listing")
        };
        assert_eq!(
            names,
            ["vaults/v/log/1", "vaults/v/log/10", "vaults/v/log/2"]
        );
        let HostReply::Names(all) = storage.list("vaults/v/").await else {
            panic!("no listing")
        };
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(matches!(
            storage.list("vaults/none/log/").await,
            HostReply::Names(n) if n.is_empty()
        ));
        assert!(matches!(storage.list("../etc/").await, HostReply::Error(_)));
        // No temporary file stays behind a create or a refused one.
        let leftovers = |dir: &str| {
            std::fs::read_dir(root.join(dir))
                .unwrap()
                .filter(|e| {
                    let e = e.as_ref().unwrap().file_name();
                    e.to_string_lossy().contains(TEMPORARY) && e != "3#999-0"
                })
                .count()
        };
        assert_eq!(leftovers("vaults/v/log"), 0);

        // Eight writers race for one name: exactly one creates it, the others are refused,
        // and the bytes are the winner's whole.
        let storage = Arc::new(storage);
        let racers: Vec<_> = (0..8u8)
            .map(|i| {
                let s = storage.clone();
                tokio::spawn(
                    async move { (i, s.put_create("vaults/r/log/1", vec![i; 4096]).await) },
                )
            })
            .collect();
        let mut winners = Vec::new();
        for r in racers {
            match r.await.unwrap() {
                (i, HostReply::Created) => winners.push(i),
                (_, HostReply::AlreadyExists) => {}
                (_, other) => panic!("{other:?}"),
            }
        }
        assert_eq!(winners.len(), 1);
        assert!(matches!(
            storage.get("vaults/r/log/1").await,
            HostReply::Object(Some(b)) if b == vec![winners[0]; 4096]
        ));
        assert_eq!(leftovers("vaults/r/log"), 0);

        // Something planted under an object's name is listed and refused, not read.
        std::os::unix::fs::symlink("/etc/hostname", root.join("vaults/v/log/4")).unwrap();
        let HostReply::Names(names) = storage.list("vaults/v/log/").await else {
            panic!("no listing")
        };
        assert!(names.contains(&"vaults/v/log/4".to_owned()));
        assert!(matches!(
            storage.get("vaults/v/log/4").await,
            HostReply::Error(_)
        ));

        // Deletes remove (a missing name is fine); a restart sweeps the crash's leftover.
        assert!(matches!(
            storage
                .delete(&["vaults/v/log/1".into(), "vaults/v/log/99".into()])
                .await,
            HostReply::Done
        ));
        assert!(matches!(
            storage.get("vaults/v/log/1").await,
            HostReply::Object(None)
        ));
        drop(storage);
        let _again = Storage::local(t.path().join("objects")).unwrap();
        assert!(!root.join("vaults/v/log/3#999-0").exists());
    }
}
