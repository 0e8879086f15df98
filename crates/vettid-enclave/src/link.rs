//! The enclave's end of the channel: the only way out of the enclave.
//!
//! One reader thread takes frames off the socket: responses wake the worker waiting for them
//! (matched by id); requests go to the worker pool. Writers take a lock per whole frame, so
//! many requests are in flight in both directions with no global lock on the work itself.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vettid_proto::channel::{Frame, Kind, Received, from_body, to_body};
use vettid_proto::enclave::{HostReply, ToHost};

/// Host requests queued for the workers at most; beyond it the enclave answers "busy" at once
/// instead of buffering without bound (each request may be up to a frame's size).
const QUEUE: usize = 256;

/// How long the enclave waits for the host to answer one request.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to the host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The channel is gone (the host died or closed it).
    #[error("channel to the host closed")]
    Closed,
    /// The host did not answer in time.
    #[error("host did not answer in time")]
    Timeout,
    /// The host's answer did not decode.
    #[error("malformed answer from the host")]
    Malformed,
    /// The host answered with an error.
    #[error("host error: {0}")]
    Host(String),
}

/// A request from the host, to be answered with [`Link::respond`].
pub struct Incoming {
    /// The request id to answer.
    pub id: u64,
    /// The request body (or why it could not be read).
    pub body: Result<Vec<u8>, String>,
}

/// The shared channel handle.
pub struct Link {
    writer: Mutex<BufWriter<Box<dyn Write + Send>>>,
    pending: Mutex<HashMap<u64, Sender<Vec<u8>>>>,
    next_id: AtomicU64,
}

impl Link {
    /// Wraps a connected stream (a Unix socket, or vsock on Nitro), given as its two halves;
    /// returns the link and the stream of host requests. The reader thread ends (and the
    /// receiver closes) when the stream closes.
    pub fn start(
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
    ) -> std::io::Result<(Arc<Link>, Receiver<Incoming>)> {
        let link = Arc::new(Link {
            writer: Mutex::new(BufWriter::new(writer)),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let reader_link = link.clone();
        std::thread::Builder::new()
            .name("channel-reader".into())
            .spawn(move || reader_link.read_loop(BufReader::new(reader), tx))?;
        Ok((link, rx))
    }

    /// Queues a host request for the workers, or answers "busy" when the queue is full.
    /// Returns false when the workers are gone.
    fn enqueue(&self, requests: &SyncSender<Incoming>, incoming: Incoming) -> bool {
        match requests.try_send(incoming) {
            Ok(()) => true,
            Err(TrySendError::Full(Incoming { id, .. })) => {
                let busy: Result<
                    vettid_proto::enclave::EnclaveReply,
                    vettid_proto::enclave::VaultError,
                > = Err(vettid_proto::enclave::VaultError::Internal(
                    "enclave busy; retry".into(),
                ));
                self.respond(id, to_body(&busy));
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn read_loop(&self, mut r: BufReader<Box<dyn Read + Send>>, requests: SyncSender<Incoming>) {
        loop {
            match Received::from(Frame::read_from(&mut r)) {
                Received::Request { id, body } => {
                    let body = body.map_err(|e| e.to_string());
                    if !self.enqueue(&requests, Incoming { id, body }) {
                        break;
                    }
                }
                Received::Response { id, body } => {
                    let waiter = self
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    if let Some(waiter) = waiter {
                        // A bad answer fails the call waiting for it, not some other request.
                        let _ = waiter.send(
                            body.unwrap_or_else(|e| to_body(&HostReply::Error(e.to_string()))),
                        );
                    }
                }
                Received::Nothing => {}
                Received::Closed => break,
            }
        }
        // Wake every waiter: the host is gone.
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn send(&self, frame: &Frame) -> Result<(), LinkError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        frame.write_to(&mut *w).map_err(|_| LinkError::Closed)
    }

    /// Answers the host's request `id`.
    pub fn respond(&self, id: u64, body: Vec<u8>) {
        let _ = self.send(&Frame {
            kind: Kind::Response,
            id,
            body,
        });
    }

    /// Sends `request` to the host and waits for its answer.
    pub fn call(&self, request: &ToHost) -> Result<HostReply, LinkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let sent = self.send(&Frame {
            kind: Kind::Request,
            id,
            body: to_body(request),
        });
        let result = sent.and_then(|()| {
            rx.recv_timeout(CALL_TIMEOUT).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => LinkError::Timeout,
                mpsc::RecvTimeoutError::Disconnected => LinkError::Closed,
            })
        });
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match from_body::<HostReply>(&result?).map_err(|_| LinkError::Malformed)? {
            HostReply::Error(e) => Err(LinkError::Host(e)),
            reply => Ok(reply),
        }
    }
}

impl vettid_attest::seal::Attestor for Link {
    fn attest(
        &self,
        request: &vettid_attest::AttestRequest,
    ) -> Result<Vec<u8>, vettid_attest::seal::SealError> {
        let err =
            |e: &dyn std::fmt::Display| vettid_attest::seal::SealError::Attestation(e.to_string());
        match self.call(&ToHost::Attest {
            nonce: request.nonce.clone(),
            public_key: request.public_key.clone(),
            user_data: request.user_data.clone(),
        }) {
            Ok(HostReply::Bytes(doc)) => Ok(doc),
            Ok(_) => Err(err(&"unexpected answer")),
            Err(e) => Err(err(&e)),
        }
    }
}

impl vettid_attest::seal::KeyService for Link {
    fn generate_data_key(
        &self,
        doc: &[u8],
    ) -> Result<vettid_attest::seal::DataKey, vettid_attest::seal::SealError> {
        let err =
            |e: &dyn std::fmt::Display| vettid_attest::seal::SealError::KeyService(e.to_string());
        match self.call(&ToHost::GenerateDataKey { doc: doc.to_vec() }) {
            Ok(HostReply::DataKey {
                blob,
                for_recipient,
            }) => Ok(vettid_attest::seal::DataKey {
                ciphertext_blob: blob,
                ciphertext_for_recipient: for_recipient,
            }),
            Ok(_) => Err(err(&"unexpected answer")),
            Err(e) => Err(err(&e)),
        }
    }

    fn decrypt(&self, blob: &[u8], doc: &[u8]) -> Result<Vec<u8>, vettid_attest::seal::SealError> {
        let err =
            |e: &dyn std::fmt::Display| vettid_attest::seal::SealError::KeyService(e.to_string());
        match self.call(&ToHost::Decrypt {
            blob: blob.to_vec(),
            doc: doc.to_vec(),
        }) {
            Ok(HostReply::Bytes(cms)) => Ok(cms),
            Ok(_) => Err(err(&"unexpected answer")),
            Err(e) => Err(err(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use vettid_proto::enclave::{EnclaveReply, ToEnclave, VaultError};

    #[test]
    fn a_full_queue_answers_busy_instead_of_growing() {
        let (enclave_end, mut host_end) = UnixStream::pair().unwrap();
        let reader = enclave_end.try_clone().unwrap();
        // No worker takes requests off the queue.
        let (_link, _requests) = Link::start(Box::new(reader), Box::new(enclave_end)).unwrap();
        let extra = 20;
        for id in 0..(QUEUE + extra) as u64 {
            Frame {
                kind: Kind::Request,
                id,
                body: to_body(&ToEnclave::Ping),
            }
            .write_to(&mut host_end)
            .unwrap();
        }
        let mut busy = Vec::new();
        for _ in 0..extra {
            let f = Frame::read_from(&mut host_end).unwrap();
            assert_eq!(f.kind, Kind::Response);
            let reply: Result<EnclaveReply, VaultError> = from_body(&f.body).unwrap();
            assert!(matches!(reply, Err(VaultError::Internal(_))));
            busy.push(f.id);
        }
        let expected: Vec<u64> = (QUEUE as u64..(QUEUE + extra) as u64).collect();
        assert_eq!(
            busy, expected,
            "exactly the requests beyond the queue are refused"
        );
    }
}
