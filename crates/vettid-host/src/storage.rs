//! The object store behind the enclave: a local directory by default, S3 (feature `s3`) by
//! configuration. It stores only what the enclave gives it, already encrypted; it enforces
//! create-only writes (`PutMode::Create`: a local hard link, or S3's `If-None-Match: *`), which
//! is what fences concurrent writers.

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::path::PathBuf;
use std::sync::Arc;
use vettid_proto::enclave::HostReply;

/// The object store.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// For a local directory: its root, to fsync what was written.
    local_root: Option<PathBuf>,
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

impl Storage {
    /// Objects under `root` (created if missing).
    pub fn local(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(std::io::Error::other)?;
        Ok(Self {
            store: Arc::new(store),
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
                let root = root.clone();
                let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    std::fs::File::open(&path)?.sync_all()?;
                    // Every directory up to the root: the first object of a new directory is
                    // only durable once the directories leading to it are.
                    let mut dir = path.parent();
                    while let Some(d) = dir {
                        std::fs::File::open(d)?.sync_all()?;
                        if d == root {
                            break;
                        }
                        dir = d.parent();
                    }
                    Ok(())
                })
                .await;
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
