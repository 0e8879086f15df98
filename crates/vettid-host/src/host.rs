//! The host: has the platform launch the enclave (and launch it again when it dies), serves
//! its storage and clock requests, relays its key-service TLS connections byte for byte, and
//! forwards client operations to it.
//!
//! It holds no vault key, PIN or plaintext: objects arrive encrypted, key-service traffic is
//! TLS that ends inside the enclave, attestation documents never pass through it, and client
//! operations are passed through unread (on the debug path a PIN crosses the host in a request
//! body; it is never logged, and the app's path sends it inside the attested session).

use crate::frames::{read_frame, write_frame};
use crate::relay::Relays;
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
/// How long the host works on one of the enclave's requests before answering it with an
/// error (under the enclave's own 30 s wait).
const SERVE_TIMEOUT: Duration = Duration::from_secs(25);
/// Client operations waiting for the enclave at most; beyond, callers are told it is busy
/// (each holds at most one app message, ≤ 4 MiB: the enclave refuses longer requests).
const MAX_IN_FLIGHT: usize = 1024;

/// How the host runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// How the enclave reaches the host.
    pub channel: Channel,
    /// Where objects are stored.
    pub objects: Objects,
    /// Where the enclave's key service is (the host relays bytes to it).
    pub key_service: KeyServiceEndpoint,
}

/// Where the key service listens: the dev platform's socket, or AWS KMS over TCP (what
/// vsock-proxy does on a Nitro parent).
#[derive(Debug, Clone)]
pub enum KeyServiceEndpoint {
    /// A Unix socket (the dev key service, `<data>/kms.sock`).
    Unix(PathBuf),
    /// `host:port` (`kms.<region>.amazonaws.com:443`).
    Tcp(String),
}

/// How the enclave and the host are connected.
#[derive(Debug, Clone)]
pub enum Channel {
    /// The dev platform launches (and relaunches) the enclave, which connects to `socket`.
    Local {
        /// The Unix socket the host listens on.
        socket: PathBuf,
        /// The dev platform's socket.
        platform: PathBuf,
        /// Resource settings for the enclave (`--idle-secs N`, …; nothing that is policy).
        tunables: Vec<String>,
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
    /// Too many operations are waiting for the enclave; retry.
    #[error("the enclave is busy; retry")]
    Busy,
}

struct Conn {
    writer: Arc<Mutex<Writer>>,
    pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>,
}

/// A running host.
pub struct Host {
    conn: watch::Receiver<Option<Arc<Conn>>>,
    in_flight: Arc<tokio::sync::Semaphore>,
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
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
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
        let _permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| HostError::Busy)?;
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
        let forget = || {
            conn.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        };
        // The write is never cut short (half a frame would desynchronise the channel for
        // every call); only the wait for the answer is timed.
        if write_frame(&mut *conn.writer.lock().await, &frame)
            .await
            .is_err()
        {
            forget();
            return Err(HostError::Unavailable("enclave connection lost".into()));
        }
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx).await;
        if answer.is_err() {
            forget();
        }
        let body = answer
            .map_err(|_| HostError::Unavailable("enclave did not answer in time".into()))?
            .map_err(|_| HostError::Unavailable("enclave restarted during the call".into()))?;
        from_body(&body).map_err(|_| HostError::Malformed)
    }
}

/// Has the platform launch the enclave (local channel) and waits for its connection; on
/// vsock, waits for the enclave to connect. `None` when this attempt failed and should be
/// retried.
async fn next_connection(
    config: &HostConfig,
    listener: &Listener,
    enclave_pid: &AtomicU64,
) -> Option<(Reader, Writer)> {
    match (listener, &config.channel) {
        (
            Listener::Unix(listener),
            Channel::Local {
                socket,
                platform,
                tunables,
            },
        ) => {
            match launch(platform, socket, tunables).await {
                Ok(pid) => enclave_pid.store(u64::from(pid), Ordering::Relaxed),
                Err(e) => {
                    tracing::error!(error = %e, "the platform did not launch the enclave");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return None;
                }
            }
            let Ok(Ok((stream, _))) =
                tokio::time::timeout(Duration::from_secs(30), listener.accept()).await
            else {
                return None;
            };
            let (r, w) = stream.into_split();
            Some((Box::new(r), Box::new(w)))
        }
        #[cfg(feature = "vsock")]
        (Listener::Vsock(listener), Channel::Vsock { .. }) => {
            let (stream, _) = listener.accept().await.ok()?;
            let (r, w) = stream.into_split();
            Some((Box::new(r), Box::new(w)))
        }
        _ => None,
    }
}

/// Asks the platform to launch the enclave for `socket`; its process id.
async fn launch(
    platform: &std::path::Path,
    socket: &std::path::Path,
    tunables: &[String],
) -> std::io::Result<u32> {
    use vettid_proto::platform::{FromPlatform, ToPlatform};
    let mut stream = tokio::net::UnixStream::connect(platform).await?;
    let frame = Frame {
        kind: Kind::Request,
        id: 1,
        body: to_body(&ToPlatform::Launch {
            socket: socket.to_string_lossy().into_owned(),
            tunables: tunables.to_vec(),
        }),
    };
    write_frame(&mut stream, &frame).await?;
    let answer = read_frame(&mut stream)
        .await
        .map_err(std::io::Error::other)?;
    match from_body(&answer.body).map_err(std::io::Error::other)? {
        FromPlatform::Launched { pid } => Ok(pid),
        FromPlatform::Refused(e) => Err(std::io::Error::other(e)),
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
        let Some((mut reader, writer)) = next_connection(&config, &listener, &enclave_pid).await
        else {
            continue;
        };
        let current = Arc::new(Conn {
            writer: Arc::new(Mutex::new(writer)),
            pending: Arc::new(std::sync::Mutex::new(HashMap::new())),
        });
        let relays = Arc::new(Relays::new(config.key_service.clone()));
        let _ = conn.send(Some(current.clone()));
        tracing::info!(
            pid = enclave_pid.load(Ordering::Relaxed),
            "enclave connected"
        );
        loop {
            match Received::from(read_frame(&mut reader).await) {
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
                    let (storage, writer, relays) =
                        (storage.clone(), current.writer.clone(), relays.clone());
                    tokio::spawn(async move {
                        let reply = match body.map(|b| from_body::<ToHost>(&b)) {
                            // Every request is answered, in time and even if serving it
                            // panicked: the enclave's caller may be the one reading the channel,
                            // and only an answer wakes it.
                            Ok(Ok(req)) => {
                                let mut served =
                                    tokio::spawn(
                                        async move { serve(&storage, &relays, req).await },
                                    );
                                match tokio::time::timeout(SERVE_TIMEOUT, &mut served).await {
                                    Ok(Ok(reply)) => reply,
                                    Ok(Err(_)) => HostReply::Error("request failed".into()),
                                    Err(_) => {
                                        // Stopped, not left running: a late relay read must
                                        // not take bytes nobody reads.
                                        served.abort();
                                        HostReply::Error("request timed out".into())
                                    }
                                }
                            }
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
    }
}

async fn serve(storage: &Storage, relays: &Relays, request: ToHost) -> HostReply {
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
        ToHost::Connect => relays.connect().await,
        ToHost::Send { conn, bytes } => relays.send(conn, &bytes).await,
        ToHost::Receive { conn } => relays.receive(conn).await,
        ToHost::Close { conn } => relays.close(conn),
        ToHost::Credentials => crate::relay::credentials().await,
    }
}
