//! The host: starts the enclave process (and restarts it when it dies), serves its storage,
//! key-service, attestation and clock requests, and forwards client operations to it.
//!
//! It holds no vault key, PIN or plaintext: objects arrive encrypted, key-service answers are
//! encrypted to the enclave, and client operations are passed through unread (on the debug
//! path a PIN crosses the host in a request body; it is never logged, and the app's path sends
//! it inside the attested session).

use crate::frames::{read_frame, write_frame};
use crate::storage::Storage;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{Mutex, oneshot, watch};
use vettid_proto::channel::{Frame, Kind, Received, from_body, to_body};
use vettid_proto::enclave::{EnclaveReply, HostReply, ToEnclave, ToHost, VaultError};

/// How long a client operation may wait for the enclave.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How the host runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// How the enclave reaches the host.
    pub channel: Channel,
    /// Where objects are stored.
    pub objects: Objects,
    /// The dev platform's socket (attestor and key service).
    pub platform: PathBuf,
}

/// How the enclave and the host are connected.
#[derive(Debug, Clone)]
pub enum Channel {
    /// The host starts (and restarts) the enclave process itself; it connects to `socket`.
    Local {
        /// The Unix socket the host listens on.
        socket: PathBuf,
        /// The enclave binary.
        enclave: PathBuf,
        /// Its arguments besides `--socket`.
        args: Vec<String>,
    },
    /// The enclave runs in a Nitro Enclave (started by `nitro-cli`) and connects over vsock to
    /// this port (feature `vsock`).
    Vsock {
        /// The vsock port the host listens on.
        port: u32,
    },
}

enum Listener {
    Unix(UnixListener),
    #[cfg(feature = "vsock")]
    Vsock(tokio_vsock::VsockListener),
}

type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Where the host stores the enclave's objects.
#[derive(Debug, Clone)]
pub enum Objects {
    /// A local directory (the default).
    Local(PathBuf),
    /// An S3 bucket (feature `s3`), optionally at an S3-compatible endpoint.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Endpoint URL, for S3-compatible servers.
        endpoint: Option<String>,
    },
}

impl Objects {
    fn open(&self) -> std::io::Result<Storage> {
        match self {
            Objects::Local(dir) => Storage::local(dir.clone()),
            #[cfg(feature = "s3")]
            Objects::S3 { bucket, endpoint } => Storage::s3(bucket, endpoint.as_deref()),
            #[cfg(not(feature = "s3"))]
            Objects::S3 { .. } => Err(std::io::Error::other(
                "this build has no S3 support (feature `s3`)",
            )),
        }
    }
}

/// Why a client operation did not reach the enclave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// No enclave is connected (starting or restarting), or it died during the call.
    #[error("enclave unavailable: {0}")]
    Unavailable(String),
    /// The enclave's answer did not decode.
    #[error("malformed answer from the enclave")]
    Malformed,
}

struct Conn {
    writer: Arc<Mutex<Writer>>,
    pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>,
}

/// A running host.
pub struct Host {
    conn: watch::Receiver<Option<Arc<Conn>>>,
    next_id: AtomicU64,
    restarts: Arc<AtomicU64>,
    enclave_pid: Arc<AtomicU64>,
}

impl Host {
    /// Binds the channel, starts the enclave and keeps it running.
    pub async fn start(config: HostConfig) -> std::io::Result<Host> {
        let storage = Arc::new(config.objects.open()?);
        let listener = match &config.channel {
            Channel::Local { socket, .. } => {
                let _ = std::fs::remove_file(socket);
                Listener::Unix(UnixListener::bind(socket)?)
            }
            #[cfg(feature = "vsock")]
            Channel::Vsock { port } => Listener::Vsock(tokio_vsock::VsockListener::bind(
                tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, *port),
            )?),
            #[cfg(not(feature = "vsock"))]
            Channel::Vsock { .. } => {
                return Err(std::io::Error::other(
                    "this build has no vsock support (feature `vsock`)",
                ));
            }
        };
        let (tx, rx) = watch::channel(None);
        let restarts = Arc::new(AtomicU64::new(0));
        let enclave_pid = Arc::new(AtomicU64::new(0));
        tokio::spawn(supervise(
            config,
            listener,
            storage,
            tx,
            restarts.clone(),
            enclave_pid.clone(),
        ));
        Ok(Host {
            conn: rx,
            next_id: AtomicU64::new(1),
            restarts,
            enclave_pid,
        })
    }

    /// How many times the enclave was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// The current enclave process id (0 before the first start).
    pub fn enclave_pid(&self) -> u32 {
        self.enclave_pid.load(Ordering::Relaxed) as u32
    }

    /// Waits until an enclave is connected.
    pub async fn ready(&self, timeout: Duration) -> Result<(), HostError> {
        let mut rx = self.conn.clone();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .map_err(|_| HostError::Unavailable("enclave did not connect".into()))?
            .map_err(|_| HostError::Unavailable("host stopped".into()))?;
        Ok(())
    }

    /// Sends a request to the enclave and waits for its answer.
    pub async fn call(
        &self,
        request: &ToEnclave,
    ) -> Result<Result<EnclaveReply, VaultError>, HostError> {
        self.ready(Duration::from_secs(30)).await?;
        let conn = self
            .conn
            .borrow()
            .clone()
            .ok_or_else(|| HostError::Unavailable("no enclave".into()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let frame = Frame {
            kind: Kind::Request,
            id,
            body: to_body(request),
        };
        if write_frame(&mut *conn.writer.lock().await, &frame)
            .await
            .is_err()
        {
            return Err(HostError::Unavailable("enclave connection lost".into()));
        }
        let body = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .map_err(|_| HostError::Unavailable("enclave did not answer in time".into()))?
            .map_err(|_| HostError::Unavailable("enclave restarted during the call".into()))?;
        from_body(&body).map_err(|_| HostError::Malformed)
    }
}

/// Starts the enclave (local channel) and waits for its connection; on vsock, waits for the
/// enclave to connect. `None` when this attempt failed and should be retried.
async fn next_connection(
    config: &HostConfig,
    listener: &Listener,
    enclave_pid: &AtomicU64,
) -> Option<(Reader, Writer, Option<tokio::process::Child>)> {
    match (listener, &config.channel) {
        (
            Listener::Unix(listener),
            Channel::Local {
                socket,
                enclave,
                args,
            },
        ) => {
            let mut child = match tokio::process::Command::new(enclave)
                .arg("--socket")
                .arg(socket)
                .args(args)
                .kill_on_drop(true)
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the enclave");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return None;
                }
            };
            enclave_pid.store(u64::from(child.id().unwrap_or(0)), Ordering::Relaxed);
            let accepted = tokio::select! {
                a = tokio::time::timeout(Duration::from_secs(30), listener.accept()) => a,
                _ = child.wait() => return None,
            };
            let Ok(Ok((stream, _))) = accepted else {
                let _ = child.kill().await;
                return None;
            };
            let (r, w) = stream.into_split();
            Some((Box::new(r), Box::new(w), Some(child)))
        }
        #[cfg(feature = "vsock")]
        (Listener::Vsock(listener), Channel::Vsock { .. }) => {
            let (stream, _) = listener.accept().await.ok()?;
            let (r, w) = stream.into_split();
            Some((Box::new(r), Box::new(w), None))
        }
        _ => None,
    }
}

async fn supervise(
    config: HostConfig,
    listener: Listener,
    storage: Arc<Storage>,
    conn: watch::Sender<Option<Arc<Conn>>>,
    restarts: Arc<AtomicU64>,
    enclave_pid: Arc<AtomicU64>,
) {
    let mut first = true;
    loop {
        if !first {
            restarts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("enclave connection ended; waiting for a new one");
        }
        first = false;
        let Some((mut reader, writer, mut child)) =
            next_connection(&config, &listener, &enclave_pid).await
        else {
            continue;
        };
        let current = Arc::new(Conn {
            writer: Arc::new(Mutex::new(writer)),
            pending: Arc::new(std::sync::Mutex::new(HashMap::new())),
        });
        let _ = conn.send(Some(current.clone()));
        tracing::info!(
            pid = enclave_pid.load(Ordering::Relaxed),
            "enclave connected"
        );
        loop {
            let exited = async {
                match child.as_mut() {
                    Some(c) => {
                        let _ = c.wait().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let frame = tokio::select! {
                f = read_frame(&mut reader) => f,
                _ = exited => break,
            };
            match Received::from(frame) {
                Received::Response { id, body } => {
                    let tx = current
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    if let Some(tx) = tx {
                        // A bad answer fails the call waiting for it, not some other request.
                        let _ = tx.send(body.unwrap_or_else(|e| {
                            to_body(&Err::<EnclaveReply, VaultError>(VaultError::Internal(
                                e.to_string(),
                            )))
                        }));
                    }
                }
                Received::Request { id, body } => {
                    let (storage, writer, platform) = (
                        storage.clone(),
                        current.writer.clone(),
                        config.platform.clone(),
                    );
                    tokio::spawn(async move {
                        let reply = match body.map(|b| from_body::<ToHost>(&b)) {
                            Ok(Ok(req)) => serve(&storage, &platform, req).await,
                            Ok(Err(_)) => HostReply::Error("malformed request".into()),
                            Err(e) => HostReply::Error(e.to_string()),
                        };
                        let frame = Frame {
                            kind: Kind::Response,
                            id,
                            body: to_body(&reply),
                        };
                        let _ = write_frame(&mut *writer.lock().await, &frame).await;
                    });
                }
                Received::Nothing => {}
                Received::Closed => break,
            }
        }
        let _ = conn.send(None);
        current
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Some(mut child) = child {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

async fn serve(storage: &Storage, platform: &std::path::Path, request: ToHost) -> HostReply {
    match request {
        ToHost::Get { name } => storage.get(&name).await,
        ToHost::PutCreate { name, bytes } => storage.put_create(&name, bytes).await,
        ToHost::List { prefix } => storage.list(&prefix).await,
        ToHost::Delete { names } => storage.delete(&names).await,
        ToHost::Now => HostReply::Now(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        ),
        relayed @ (ToHost::Attest { .. }
        | ToHost::GenerateDataKey { .. }
        | ToHost::Decrypt { .. }) => relay(platform, &relayed)
            .await
            .unwrap_or_else(|e| HostReply::Error(format!("platform: {e}"))),
    }
}

/// Passes an attestation or key-service request to the platform (the dev platform process;
/// on Nitro, NSM and AWS KMS) and returns its answer unread.
async fn relay(platform: &std::path::Path, request: &ToHost) -> std::io::Result<HostReply> {
    let mut stream = tokio::net::UnixStream::connect(platform).await?;
    let frame = Frame {
        kind: Kind::Request,
        id: 1,
        body: to_body(request),
    };
    write_frame(&mut stream, &frame).await?;
    let answer = read_frame(&mut stream)
        .await
        .map_err(std::io::Error::other)?;
    from_body(&answer.body).map_err(std::io::Error::other)
}
