//! The host's local control socket: how debug tools and tests drive the enclave before NATS
//! exists. Frames as on the channel; a request body is a [`ToEnclave`], a response body a
//! `Result<EnclaveReply, VaultError>`.

use crate::frames::{read_frame, write_frame};
use crate::host::{Host, HostError};
use std::io::{BufReader, BufWriter};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use tokio::net::UnixListener;
use vettid_proto::channel::{Frame, FrameError, Kind, Received, from_body, to_body};
use vettid_proto::enclave::{EnclaveReply, Invalid, ToEnclave, VaultError};

/// Serves the control socket at `path` (replacing a stale one) until the task is dropped.
pub async fn serve(host: Arc<Host>, path: &Path) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let host = host.clone();
            tokio::spawn(async move {
                let (mut r, w) = stream.into_split();
                let w = Arc::new(tokio::sync::Mutex::new(w));
                loop {
                    let (id, body) = match Received::from(read_frame(&mut r).await) {
                        Received::Request { id, body } => (id, body),
                        // Clients only send requests; anything else is ignored.
                        Received::Response { .. } | Received::Nothing => continue,
                        Received::Closed => break,
                    };
                    let (host, w) = (host.clone(), w.clone());
                    // Requests on one connection run concurrently.
                    tokio::spawn(async move {
                        let reply: Result<EnclaveReply, VaultError> =
                            match body.map(|b| from_body::<ToEnclave>(&b)) {
                                Ok(Ok(req)) => host
                                    .call(&req)
                                    .await
                                    .unwrap_or_else(|e| Err(unavailable(e))),
                                Ok(Err(_)) | Err(_) => Err(Invalid::Malformed.into()),
                            };
                        let frame = Frame {
                            kind: Kind::Response,
                            id,
                            body: to_body(&reply),
                        };
                        let _ = write_frame(&mut *w.lock().await, &frame).await;
                    });
                }
            });
        }
    }))
}

fn unavailable(e: HostError) -> VaultError {
    VaultError::Internal(e.to_string())
}

/// A blocking client of the control socket (one request at a time).
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the control socket at `path`.
    pub fn connect(path: &Path) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream),
            next_id: 1,
        })
    }

    /// Sends one request and waits for its answer. `Err` only if the socket failed.
    pub fn call(
        &mut self,
        request: &ToEnclave,
    ) -> std::io::Result<Result<EnclaveReply, VaultError>> {
        let id = self.next_id;
        self.next_id += 1;
        Frame {
            kind: Kind::Request,
            id,
            body: to_body(request),
        }
        .write_to(&mut self.writer)?;
        loop {
            match Frame::read_from(&mut self.reader) {
                Ok(f) if f.kind == Kind::Response && f.id == id => {
                    return from_body(&f.body).map_err(std::io::Error::other);
                }
                Ok(_) | Err(FrameError::Short) => continue,
                Err(FrameError::Closed(e)) => return Err(e),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    }
}
