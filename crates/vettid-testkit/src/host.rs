//! The adversarial host: serves a real enclave process, runs the test's script on every
//! request the enclave makes, and carries app messages.

use crate::store::Store;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use vettid_client::vault::VaultClient;
use vettid_proto::channel::{Frame, Kind, Received, from_body, to_body};
use vettid_proto::enclave::{EnclaveReply, HostReply, Outbound, ToEnclave, ToHost, VaultError};
use vettid_proto::platform::{FromPlatform, ToPlatform};
use vettid_proto::session::Channel;

/// What the script decides for one request of the enclave.
pub enum Action {
    /// Do what an honest host does.
    Honest,
    /// Answer this instead (a lie).
    Answer(HostReply),
    /// Do what an honest host does, then change its answer before the enclave sees it.
    Rewrite(Box<dyn FnOnce(HostReply) -> HostReply + Send>),
}

/// The test's say over each request the enclave makes: it sees the request and the store
/// (which it may change first), and decides the answer.
pub type Script = Box<dyn FnMut(&ToHost, &mut Store) -> Action + Send>;

/// How to run the enclave.
#[derive(Debug, Clone)]
pub struct Options {
    /// Resource settings for the enclave (what a host may choose).
    pub tunables: Vec<String>,
    /// A directory for the channel socket.
    pub dir: PathBuf,
    /// The dev platform's socket: it launches the enclave.
    pub platform: PathBuf,
    /// The key service's socket, where an honest host relays the enclave's TLS streams.
    pub key_service: PathBuf,
}

struct Inner {
    store: Mutex<Store>,
    script: Mutex<Option<Script>>,
    /// Every request the enclave made, in order (for tests that assert what was asked).
    seen: Mutex<Vec<ToHost>>,
    writer: Mutex<Option<BufWriter<UnixStream>>>,
    pending: Mutex<HashMap<u64, Sender<Vec<u8>>>>,
    next_id: AtomicU64,
    /// App replies still to drop (the enclave ran the request; the app never hears).
    drop_replies: AtomicUsize,
    /// Events the enclave asked to publish.
    events: Mutex<Vec<(String, Outbound)>>,
    /// Where key-service streams go.
    key_service: Mutex<PathBuf>,
    streams: Mutex<HashMap<u64, Arc<UnixStream>>>,
    next_stream: AtomicU64,
}

/// A hostile host around a real enclave process (launched by the platform). Dropping it
/// closes the channel, which ends the enclave.
pub struct AdversarialHost {
    inner: Arc<Inner>,
    options: Options,
    listener: UnixListener,
    pid: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AdversarialHost {
    /// Binds the channel socket and starts the enclave; returns once it is connected.
    pub fn start(options: Options) -> std::io::Result<AdversarialHost> {
        std::fs::create_dir_all(&options.dir)?;
        let socket = options.dir.join("enclave.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        let host = AdversarialHost {
            inner: Arc::new(Inner {
                store: Mutex::new(Store::default()),
                script: Mutex::new(None),
                seen: Mutex::new(Vec::new()),
                writer: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                drop_replies: AtomicUsize::new(0),
                events: Mutex::new(Vec::new()),
                key_service: Mutex::new(options.key_service.clone()),
                streams: Mutex::new(HashMap::new()),
                next_stream: AtomicU64::new(1),
            }),
            options,
            listener,
            pid: AtomicU64::new(0),
        };
        host.launch()?;
        Ok(host)
    }

    /// Asks the platform to launch the enclave with `tunables`; its answer.
    pub fn request_launch(&self, tunables: &[String]) -> std::io::Result<FromPlatform> {
        let socket = self.options.dir.join("enclave.sock");
        let mut platform = UnixStream::connect(&self.options.platform)?;
        Frame {
            kind: Kind::Request,
            id: 1,
            body: to_body(&ToPlatform::Launch {
                socket: socket.to_string_lossy().into_owned(),
                tunables: tunables.to_vec(),
            }),
        }
        .write_to(&mut platform)?;
        let answer = Frame::read_from(&mut platform).map_err(std::io::Error::other)?;
        from_body(&answer.body).map_err(std::io::Error::other)
    }

    fn launch(&self) -> std::io::Result<()> {
        match self.request_launch(&self.options.tunables)? {
            FromPlatform::Launched { pid } => self.pid.store(u64::from(pid), Ordering::SeqCst),
            FromPlatform::Refused(e) => return Err(std::io::Error::other(e)),
        }
        let (stream, _) = self.listener.accept()?;
        let reader = BufReader::new(stream.try_clone()?);
        *lock(&self.inner.writer) = Some(BufWriter::new(stream));
        let inner = self.inner.clone();
        std::thread::spawn(move || read_loop(&inner, reader));
        Ok(())
    }

    /// Has the platform start a new enclave (it kills the old one): everything the old one
    /// held in memory is gone, storage stays as the host keeps it.
    pub fn restart_enclave(&self) -> std::io::Result<()> {
        *lock(&self.inner.writer) = None;
        lock(&self.inner.pending).clear();
        self.launch()
    }

    /// The enclave's process id.
    pub fn enclave_pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst) as u32
    }

    /// Relays key-service streams opened from now on to `socket` instead (say, a key service
    /// of the host's own).
    pub fn relay_key_service_to(&self, socket: PathBuf) {
        *lock(&self.inner.key_service) = socket;
    }

    /// Sets the script run on every request from now on (replacing any earlier one).
    pub fn script(&self, script: impl FnMut(&ToHost, &mut Store) -> Action + Send + 'static) {
        *lock(&self.inner.script) = Some(Box::new(script));
    }

    /// Back to an honest host.
    pub fn honest(&self) {
        *lock(&self.inner.script) = None;
    }

    /// The store, to read or change between requests.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.inner.store)
    }

    /// The requests the enclave has made so far (and forgets them).
    pub fn take_seen(&self) -> Vec<ToHost> {
        std::mem::take(&mut *lock(&self.inner.seen))
    }

    /// Events the enclave asked to publish, with their member.
    pub fn events(&self) -> Vec<(String, Outbound)> {
        lock(&self.inner.events).clone()
    }

    /// The next `n` app replies are lost: the enclave runs the requests, the app gets an error.
    pub fn drop_app_replies(&self, n: usize) {
        self.inner.drop_replies.store(n, Ordering::SeqCst);
    }

    /// Sends one request to the enclave and waits for its answer.
    pub fn call(&self, request: &ToEnclave) -> Result<EnclaveReply, VaultError> {
        call(&self.inner, request)
            .unwrap_or_else(|e| Err(VaultError::Internal(format!("channel: {e}"))))
    }

    /// A vault operation on the debug path.
    pub fn vault(
        &self,
        vault: &str,
        op: vettid_proto::enclave::VaultOp,
    ) -> Result<EnclaveReply, VaultError> {
        self.call(&ToEnclave::Vault {
            vault: vault.into(),
            op,
        })
    }

    /// An app of `member` whose messages this host carries to the enclave (the SDK's whole
    /// protocol runs above it).
    pub fn app(&self, member: &str) -> VaultClient {
        let inner = self.inner.clone();
        let who = member.to_owned();
        VaultClient::direct(
            member,
            Arc::new(move |channel: Channel, body: Vec<u8>| {
                let (inner, member) = (inner.clone(), who.clone());
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || app_message(&inner, &member, channel, body))
                        .await
                        .map_err(|e| e.to_string())?
                })
            }),
        )
    }
}

impl Drop for AdversarialHost {
    fn drop(&mut self) {
        // The enclave ends when its channel closes.
        if let Some(w) = lock(&self.inner.writer).take() {
            let _ = w.get_ref().shutdown(std::net::Shutdown::Both);
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn app_message(
    inner: &Inner,
    member: &str,
    channel: Channel,
    body: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let reply = call(
        inner,
        &ToEnclave::App {
            member: member.to_owned(),
            channel,
            now_ms: now_ms(),
            body,
        },
    )
    .map_err(|e| e.to_string())?;
    let dropped = inner
        .drop_replies
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    match reply {
        Ok(EnclaveReply::App { body, events, .. }) => {
            lock(&inner.events).extend(events.into_iter().map(|e| (member.to_owned(), e)));
            if dropped {
                Err("reply lost in transit".into())
            } else {
                Ok(body)
            }
        }
        other => Err(format!("unexpected enclave answer: {other:?}")),
    }
}

fn call(inner: &Inner, request: &ToEnclave) -> std::io::Result<Result<EnclaveReply, VaultError>> {
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    lock(&inner.pending).insert(id, tx);
    {
        let mut w = lock(&inner.writer);
        let w = w
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no enclave"))?;
        Frame {
            kind: Kind::Request,
            id,
            body: to_body(request),
        }
        .write_to(w)?;
    }
    let body = rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|e| std::io::Error::other(format!("no answer: {e}")))?;
    from_body(&body).map_err(std::io::Error::other)
}

fn read_loop(inner: &Arc<Inner>, mut reader: BufReader<UnixStream>) {
    loop {
        match Received::from(Frame::read_from(&mut reader)) {
            Received::Response { id, body } => {
                if let (Some(tx), Ok(body)) = (lock(&inner.pending).remove(&id), body) {
                    let _ = tx.send(body);
                }
            }
            Received::Request { id, body } => {
                let inner = inner.clone();
                std::thread::spawn(move || {
                    let reply = match body.map(|b| from_body::<ToHost>(&b)) {
                        Ok(Ok(request)) => serve(&inner, request),
                        _ => HostReply::Error("malformed request".into()),
                    };
                    if let Some(w) = lock(&inner.writer).as_mut() {
                        let _ = Frame {
                            kind: Kind::Response,
                            id,
                            body: to_body(&reply),
                        }
                        .write_to(w);
                    }
                });
            }
            Received::Nothing => {}
            Received::Closed => return,
        }
    }
}

fn serve(inner: &Inner, request: ToHost) -> HostReply {
    lock(&inner.seen).push(request.clone());
    let action = {
        let mut script = lock(&inner.script);
        match script.as_mut() {
            Some(s) => s(&request, &mut lock(&inner.store)),
            None => Action::Honest,
        }
    };
    match action {
        Action::Answer(reply) => reply,
        Action::Honest => honest(inner, request),
        Action::Rewrite(change) => change(honest(inner, request)),
    }
}

/// What an honest host answers.
fn honest(inner: &Inner, request: ToHost) -> HostReply {
    match request {
        ToHost::Get { name } => HostReply::Object(lock(&inner.store).get(&name).cloned()),
        ToHost::PutCreate { name, bytes } => {
            if lock(&inner.store).create(&name, bytes) {
                HostReply::Created
            } else {
                HostReply::AlreadyExists
            }
        }
        ToHost::List { prefix } => HostReply::Names(lock(&inner.store).names(&prefix)),
        ToHost::Delete { names } => {
            let mut store = lock(&inner.store);
            for n in names {
                store.remove(&n);
            }
            HostReply::Done
        }
        ToHost::Now => HostReply::Now(now_ms()),
        ToHost::Connect => match UnixStream::connect(&*lock(&inner.key_service)) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let conn = inner.next_stream.fetch_add(1, Ordering::Relaxed);
                lock(&inner.streams).insert(conn, Arc::new(s));
                HostReply::Connected(conn)
            }
            Err(e) => HostReply::Error(format!("key service: {e}")),
        },
        ToHost::Send { conn, bytes } => match lock(&inner.streams).get(&conn).cloned() {
            Some(s) => match (&*s).write_all(&bytes) {
                Ok(()) => HostReply::Done,
                Err(e) => HostReply::Error(e.to_string()),
            },
            None => HostReply::Error("no such stream".into()),
        },
        ToHost::Receive { conn } => match lock(&inner.streams).get(&conn).cloned() {
            Some(s) => {
                let mut buf = vec![0u8; 16 * 1024];
                match (&*s).read(&mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        HostReply::Bytes(buf)
                    }
                    Err(e) => HostReply::Error(e.to_string()),
                }
            }
            None => HostReply::Error("no such stream".into()),
        },
        ToHost::Close { conn } => {
            lock(&inner.streams).remove(&conn);
            HostReply::Done
        }
        ToHost::Credentials => HostReply::Credentials(vettid_proto::enclave::AwsCredentials {
            access_key_id: "adversary".into(),
            secret_access_key: "adversary".to_owned().into(),
            session_token: None,
        }),
    }
}
