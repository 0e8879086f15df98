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
use vettid_proto::channel::{Frame, FrameError, Kind, from_body, to_body};
use vettid_proto::enclave::{EnclaveReply, ToEnclave, VaultError};

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
                    let (id, reply) = match read_frame(&mut r).await {
                        Ok(Frame {
                            kind: Kind::Request,
                            id,
                            body,
                        }) => {
                            let reply: Result<EnclaveReply, VaultError> =
                                match from_body::<ToEnclave>(&body) {
                                    Ok(req) => {
                                        let host = host.clone();
                                        let w = w.clone();
                                        // Requests on one connection run concurrently.
                                        tokio::spawn(async move {
                                            let reply = host
                                                .call(&req)
                                                .await
                                                .unwrap_or_else(|e| Err(unavailable(e)));
                                            let frame = Frame {
                                                kind: Kind::Response,
                                                id,
                                                body: to_body(&reply),
                                            };
                                            let _ = write_frame(&mut *w.lock().await, &frame).await;
                                        });
                                        continue;
                                    }
                                    Err(_) => {
                                        Err(VaultError::BadRequest("malformed request".into()))
                                    }
                                };
                            (id, reply)
                        }
                        Err(
                            FrameError::Oversized {
                                id,
                                kind: Some(Kind::Request),
                                ..
                            }
                            | FrameError::Unsupported {
                                id,
                                kind: Some(Kind::Request),
                            },
                        ) => (
                            id,
                            Err(VaultError::BadRequest(
                                "frame too large or unsupported".into(),
                            )),
                        ),
                        Ok(Frame {
                            kind: Kind::Response,
                            ..
                        })
                        | Err(
                            FrameError::Short
                            | FrameError::Oversized { .. }
                            | FrameError::Unsupported { .. },
                        ) => continue,
                        Err(FrameError::Closed(_)) => break,
                    };
                    let frame = Frame {
                        kind: Kind::Response,
                        id,
                        body: to_body(&reply),
                    };
                    let _ = write_frame(&mut *w.lock().await, &frame).await;
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
