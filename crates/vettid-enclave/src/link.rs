//! The enclave's end of the channel: the only way out of the enclave.
//!
//! Workers take turns reading the socket ("leader/followers"): the worker holding the reader
//! reads one frame; a request it keeps and handles itself (so no thread hand-off sits between
//! the host's write and the work: on a VM a wake-up costs tens of microseconds), a response it
//! hands to the worker waiting for it (matched by id). A worker waiting for the host's answer
//! to its own call reads for itself whenever nobody else is reading, queueing any request it
//! meets for the others, so calls never wait on busy workers. Writers take a lock per whole
//! frame, so many requests are in flight in both directions with no global lock on the work.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vettid_attest::seal::SealError;
use vettid_proto::channel::{Frame, Kind, Received, from_body, to_body};
use vettid_proto::enclave::{HostReply, ToHost};

/// Host requests queued (read by a worker waiting for its own answer) at most; beyond it the
/// enclave answers "busy" at once instead of buffering without bound.
const QUEUE: usize = 256;
/// Bytes of queued host requests at most (the same refusal beyond).
const QUEUE_BYTES: usize = 32 << 20;
/// Longest request the host may send (an app message is under 64 KiB, a debug value 1 MiB);
/// longer ones are refused before they are read into memory. With [`QUEUE_BYTES`] and one
/// answer per waiting worker (each at most `MAX_FRAME`), this bounds what the host can make
/// the enclave hold.
pub const MAX_HOST_REQUEST: usize = 4 << 20;
// A batch of peer messages the host may send fits one request, with room for its framing.
const _: () = assert!(vettid_proto::enclave::MAX_PEER_BATCH_BYTES + (64 << 10) < MAX_HOST_REQUEST);

/// How long the enclave waits for the host to answer one request.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a caller whose answer someone else is reading checks whether the reader is free.
const CALL_POLL: Duration = Duration::from_millis(1);

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

fn size(incoming: &Incoming) -> usize {
    incoming.body.as_ref().map_or(0, Vec::len)
}

/// A request from the host, to be answered with [`Link::respond`].
pub struct Incoming {
    /// The request id to answer.
    pub id: u64,
    /// The request body (or why it could not be read).
    pub body: Result<Vec<u8>, String>,
}

type Reader = BufReader<Box<dyn Read + Send>>;

/// What reading one frame gave.
enum Step {
    /// A host request.
    Request(Incoming),
    /// A response (delivered to its caller) or a frame to ignore.
    Other,
    /// The channel closed.
    Closed,
}

/// The shared channel handle.
pub struct Link {
    writer: Mutex<BufWriter<Box<dyn Write + Send>>>,
    /// The read half; `None` once the channel closed.
    reader: Mutex<Option<Reader>>,
    /// Requests read by callers, for the workers, and their bytes.
    backlog: Mutex<(VecDeque<Incoming>, usize)>,
    pending: Mutex<HashMap<u64, Sender<Vec<u8>>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Link {
    /// Wraps a connected stream (a Unix socket, or vsock on Nitro), given as its two halves.
    /// Workers then take requests with [`Link::next_request`].
    pub fn new(reader: Box<dyn Read + Send>, writer: Box<dyn Write + Send>) -> Arc<Link> {
        Arc::new(Link {
            writer: Mutex::new(BufWriter::new(writer)),
            reader: Mutex::new(Some(BufReader::new(reader))),
            backlog: Mutex::new((VecDeque::new(), 0)),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        })
    }

    /// The next host request for a worker: a queued one, else the next one read from the
    /// channel (responses met on the way go to their callers). `None` once the channel closed.
    pub fn next_request(&self) -> Option<Incoming> {
        loop {
            if let Some(r) = self.pop_backlog() {
                return Some(r);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            // A caller may have queued requests while this worker waited for the reader.
            if let Some(r) = self.pop_backlog() {
                return Some(r);
            }
            match self.read_one(&mut reader) {
                Step::Request(r) => return Some(r),
                Step::Other => continue,
                Step::Closed => return None,
            }
        }
    }

    fn pop_backlog(&self) -> Option<Incoming> {
        let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        let next = backlog.0.pop_front()?;
        backlog.1 -= size(&next);
        Some(next)
    }

    /// Reads one frame with the reader held; closes the link when the channel ends.
    fn read_one(&self, reader: &mut Option<Reader>) -> Step {
        let Some(r) = reader.as_mut() else {
            return Step::Closed;
        };
        match Received::from(Frame::read_limited(r, MAX_HOST_REQUEST)) {
            Received::Request { id, body } => Step::Request(Incoming {
                id,
                body: body.map_err(|e| e.to_string()),
            }),
            Received::Response { id, body } => {
                let waiter = self
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(waiter) = waiter {
                    // A bad answer fails the call waiting for it, not some other request.
                    let _ = waiter
                        .send(body.unwrap_or_else(|e| to_body(&HostReply::Error(e.to_string()))));
                }
                Step::Other
            }
            Received::Nothing => Step::Other,
            Received::Closed => {
                *reader = None;
                self.closed.store(true, Ordering::Release);
                // Wake every waiter: the host is gone.
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                Step::Closed
            }
        }
    }

    /// Queues a request a caller read, or answers "busy" when the queue is full.
    fn queue(&self, incoming: Incoming) {
        let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = size(&incoming);
        if backlog.0.len() < QUEUE && backlog.1 + bytes <= QUEUE_BYTES {
            backlog.0.push_back(incoming);
            backlog.1 += bytes;
            return;
        }
        drop(backlog);
        let busy: Result<vettid_proto::enclave::EnclaveReply, vettid_proto::enclave::VaultError> =
            Err(vettid_proto::enclave::VaultError::Internal(
                "enclave busy; retry".into(),
            ));
        self.respond(incoming.id, to_body(&busy));
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

    /// Sends `request` to the host and waits for its answer, reading the channel itself
    /// whenever no other worker is.
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
        let result = sent.and_then(|()| self.wait(&rx));
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match from_body::<HostReply>(&result?).map_err(|_| LinkError::Malformed)? {
            HostReply::Error(e) => Err(LinkError::Host(e)),
            reply => Ok(reply),
        }
    }

    fn wait(&self, rx: &mpsc::Receiver<Vec<u8>>) -> Result<Vec<u8>, LinkError> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match rx.try_recv() {
                Ok(body) => return Ok(body),
                Err(mpsc::TryRecvError::Disconnected) => return Err(LinkError::Closed),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            if Instant::now() >= deadline {
                return Err(LinkError::Timeout);
            }
            // Nobody reading? Read for ourselves (this blocks until a frame arrives).
            let reader = match self.reader.try_lock() {
                Ok(r) => Some(r),
                // A panic elsewhere while reading must not stop callers reading for themselves.
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(mut reader) = reader {
                // Answers are handed over only by the reader's holder: the one that held it
                // before us may have delivered ours since we looked, and no frame may follow
                // to wake a blocking read. Look again now that nobody else can deliver.
                match rx.try_recv() {
                    Ok(body) => return Ok(body),
                    Err(mpsc::TryRecvError::Disconnected) => return Err(LinkError::Closed),
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                match self.read_one(&mut reader) {
                    Step::Request(r) => self.queue(r),
                    Step::Other => {}
                    Step::Closed => return Err(LinkError::Closed),
                }
                continue;
            }
            // Another worker reads and will hand our answer over.
            match rx.recv_timeout(CALL_POLL) {
                Ok(body) => return Ok(body),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(LinkError::Closed),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// The key service through the host: a byte stream the host relays (TLS runs inside the
/// enclave on top of it), the host's clock, and the credentials it holds.
pub struct KeyServiceRelay(pub Arc<Link>);

impl vettid_attest::seal::kms::Transport for KeyServiceRelay {
    fn connect(&self) -> Result<Box<dyn vettid_attest::seal::kms::Stream>, SealError> {
        match self.0.call(&ToHost::Connect) {
            Ok(HostReply::Connected(conn)) => Ok(Box::new(Relayed {
                link: self.0.clone(),
                conn,
                pending: Vec::new(),
                at: 0,
            })),
            Ok(_) => Err(SealError::KeyService("unexpected answer to Connect".into())),
            Err(e) => Err(SealError::KeyService(format!("relay: {e}"))),
        }
    }

    fn now_secs(&self) -> Result<u64, SealError> {
        match self.0.call(&ToHost::Now) {
            Ok(HostReply::Now(ms)) => Ok(ms / 1000),
            _ => Err(SealError::KeyService("no clock from the host".into())),
        }
    }

    fn credentials(&self) -> Result<vettid_attest::seal::kms::Credentials, SealError> {
        match self.0.call(&ToHost::Credentials) {
            Ok(HostReply::Credentials(c)) => Ok(vettid_attest::seal::kms::Credentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: c.session_token,
            }),
            _ => Err(SealError::KeyService("no credentials from the host".into())),
        }
    }
}

/// One relayed stream to the key service.
struct Relayed {
    link: Arc<Link>,
    conn: u64,
    /// Bytes received and not yet read.
    pending: Vec<u8>,
    at: usize,
}

impl std::io::Read for Relayed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            match self.link.call(&ToHost::Receive { conn: self.conn }) {
                Ok(HostReply::Bytes(bytes)) => {
                    self.pending = bytes;
                    self.at = 0;
                }
                Ok(_) => return Err(std::io::Error::other("unexpected answer to Receive")),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl std::io::Write for Relayed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.link.call(&ToHost::Send {
            conn: self.conn,
            bytes: buf.to_vec(),
        }) {
            Ok(HostReply::Done) => Ok(buf.len()),
            Ok(_) => Err(std::io::Error::other("unexpected answer to Send")),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        let _ = self.link.call(&ToHost::Close { conn: self.conn });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use vettid_proto::enclave::{EnclaveReply, ToEnclave, VaultError};

    fn ping(id: u64) -> Frame {
        Frame {
            kind: Kind::Request,
            id,
            body: to_body(&ToEnclave::Ping),
        }
    }

    /// A worker waiting for the host's answer reads for itself, queues the requests it meets
    /// (answering "busy" beyond the queue), and gets its answer.
    #[test]
    fn a_caller_reads_for_itself_queues_requests_and_refuses_beyond_the_queue() {
        let (enclave_end, mut host_end) = UnixStream::pair().unwrap();
        let link = Link::new(
            Box::new(enclave_end.try_clone().unwrap()),
            Box::new(enclave_end),
        );
        let caller = {
            let link = link.clone();
            std::thread::spawn(move || link.call(&ToHost::Now))
        };
        // The call arrives at the host; meanwhile the host sends more requests than fit.
        let call = Frame::read_from(&mut host_end).unwrap();
        assert_eq!(call.kind, Kind::Request);
        let extra = 20;
        for id in 0..(QUEUE + extra) as u64 {
            ping(id).write_to(&mut host_end).unwrap();
        }
        Frame {
            kind: Kind::Response,
            id: call.id,
            body: to_body(&HostReply::Now(42)),
        }
        .write_to(&mut host_end)
        .unwrap();
        assert_eq!(caller.join().unwrap(), Ok(HostReply::Now(42)));
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
        // The queued ones go to workers, in order.
        for id in 0..QUEUE as u64 {
            assert_eq!(link.next_request().unwrap().id, id);
        }
    }

    /// An answer that another worker hands over just before the caller takes the reader is not
    /// lost: the caller does not then block on a channel that has nothing more to say (the
    /// host sends one answer per call and nothing else here, so a lost answer hangs a call).
    #[test]
    fn an_answer_handed_over_while_the_caller_takes_the_reader_is_not_lost() {
        let (enclave_end, host_end) = UnixStream::pair().unwrap();
        let link = Link::new(
            Box::new(enclave_end.try_clone().unwrap()),
            Box::new(enclave_end),
        );
        let host = std::thread::spawn(move || {
            let mut r = host_end.try_clone().unwrap();
            let mut w = host_end;
            while let Ok(call) = Frame::read_from(&mut r) {
                Frame {
                    kind: Kind::Response,
                    id: call.id,
                    body: to_body(&HostReply::Now(call.id)),
                }
                .write_to(&mut w)
                .unwrap();
            }
        });
        // Idle workers hold the reader in turn, so most answers are handed over by them; one
        // caller, so that nothing else on the channel would wake a caller that missed its answer.
        const CALLS: usize = 20_000;
        for _ in 0..4 {
            let link = link.clone();
            std::thread::spawn(move || while link.next_request().is_some() {});
        }
        let (done, finished) = mpsc::channel();
        {
            let (link, done) = (link.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..CALLS {
                    assert!(matches!(link.call(&ToHost::Now), Ok(HostReply::Now(_))));
                    done.send(()).unwrap();
                }
            });
        }
        drop(done);
        for _ in 0..CALLS {
            finished
                .recv_timeout(Duration::from_secs(10))
                .expect("a call's answer was lost: the caller blocks on a silent channel");
        }
        drop(link);
        let _ = host;
    }

    /// Workers read in turn; the channel closing ends every worker and fails every call.
    #[test]
    fn workers_take_turns_and_a_closed_channel_ends_them() {
        let (enclave_end, mut host_end) = UnixStream::pair().unwrap();
        let link = Link::new(
            Box::new(enclave_end.try_clone().unwrap()),
            Box::new(enclave_end),
        );
        for id in 1..=3 {
            ping(id).write_to(&mut host_end).unwrap();
        }
        let ids: Vec<u64> = (0..3).map(|_| link.next_request().unwrap().id).collect();
        assert_eq!(ids, [1, 2, 3]);
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let link = link.clone();
                std::thread::spawn(move || link.next_request().is_none())
            })
            .collect();
        drop(host_end);
        for w in waiting {
            assert!(w.join().unwrap(), "a worker saw the end");
        }
        assert_eq!(link.call(&ToHost::Now), Err(LinkError::Closed));
    }
}
