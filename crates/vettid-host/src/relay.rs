//! The key-service relay: byte streams from the enclave to the key service (the role of AWS's
//! vsock-proxy). The enclave speaks TLS over them and checks the service's certificate against
//! its measured configuration; the host carries records it can neither read nor forge.

use crate::host::KeyServiceEndpoint;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vettid_proto::enclave::{AwsCredentials, HostReply};

/// Streams open at once per enclave at most.
const MAX_STREAMS: usize = 64;
/// How long a receive waits for bytes.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

type Half<T> = std::sync::Arc<tokio::sync::Mutex<T>>;

#[derive(Clone)]
struct Stream {
    read: Half<Box<dyn AsyncRead + Send + Unpin>>,
    write: Half<Box<dyn AsyncWrite + Send + Unpin>>,
}

/// The streams of one enclave connection.
pub(crate) struct Relays {
    endpoint: KeyServiceEndpoint,
    streams: Mutex<HashMap<u64, Stream>>,
    next: AtomicU64,
}

fn error(e: impl std::fmt::Display) -> HostReply {
    HostReply::Error(format!("key-service relay: {e}"))
}

impl Relays {
    pub(crate) fn new(endpoint: KeyServiceEndpoint) -> Self {
        Self {
            endpoint,
            streams: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    fn get(&self, conn: u64) -> Option<Stream> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&conn)
            .cloned()
    }

    pub(crate) async fn connect(&self) -> HostReply {
        if self.streams.lock().unwrap_or_else(|p| p.into_inner()).len() >= MAX_STREAMS {
            return error("too many streams");
        }
        let (read, write): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match &self.endpoint {
            KeyServiceEndpoint::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => {
                    let (r, w) = s.into_split();
                    (Box::new(r), Box::new(w))
                }
                Err(e) => return error(e),
            },
            KeyServiceEndpoint::Tcp(addr) => match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    let (r, w) = s.into_split();
                    (Box::new(r), Box::new(w))
                }
                Err(e) => return error(e),
            },
        };
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                conn,
                Stream {
                    read: std::sync::Arc::new(tokio::sync::Mutex::new(read)),
                    write: std::sync::Arc::new(tokio::sync::Mutex::new(write)),
                },
            );
        HostReply::Connected(conn)
    }

    pub(crate) async fn send(&self, conn: u64, bytes: &[u8]) -> HostReply {
        let Some(stream) = self.get(conn) else {
            return error("no such stream");
        };
        let mut w = stream.write.lock().await;
        match w.write_all(bytes).await {
            Ok(()) => HostReply::Done,
            Err(e) => error(e),
        }
    }

    pub(crate) async fn receive(&self, conn: u64) -> HostReply {
        let Some(stream) = self.get(conn) else {
            return error("no such stream");
        };
        let mut r = stream.read.lock().await;
        let mut buf = vec![0u8; 16 * 1024];
        match tokio::time::timeout(RECEIVE_TIMEOUT, r.read(&mut buf)).await {
            Ok(Ok(n)) => {
                buf.truncate(n);
                HostReply::Bytes(buf)
            }
            Ok(Err(e)) => error(e),
            Err(_) => error("the key service did not answer in time"),
        }
    }

    pub(crate) fn close(&self, conn: u64) -> HostReply {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&conn);
        HostReply::Done
    }
}

/// The credentials the enclave signs key-service requests with: the `AWS_*` environment (on a
/// Nitro parent, the instance role's through the default chain with feature `kms`), else a
/// fixed development pair. They authenticate the caller to AWS only.
pub(crate) async fn credentials() -> HostReply {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    #[cfg(feature = "kms")]
    if env("AWS_ACCESS_KEY_ID").is_none() {
        use aws_config::meta::credentials::CredentialsProviderChain;
        use aws_credential_types::provider::ProvideCredentials;
        let chain = CredentialsProviderChain::default_provider().await;
        return match chain.provide_credentials().await {
            Ok(c) => HostReply::Credentials(AwsCredentials {
                access_key_id: c.access_key_id().to_owned(),
                secret_access_key: zeroize::Zeroizing::new(c.secret_access_key().to_owned()),
                session_token: c
                    .session_token()
                    .map(|t| zeroize::Zeroizing::new(t.to_owned())),
            }),
            Err(e) => error(e),
        };
    }
    HostReply::Credentials(AwsCredentials {
        access_key_id: env("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "vettid-dev".into()),
        secret_access_key: zeroize::Zeroizing::new(
            env("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "vettid-dev".into()),
        ),
        session_token: env("AWS_SESSION_TOKEN").map(zeroize::Zeroizing::new),
    })
}
