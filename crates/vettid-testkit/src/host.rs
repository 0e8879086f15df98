//! The adversarial host: serves a real enclave process, runs the test's script on every
//! request the enclave makes, and carries app messages.

use crate::store::Store;
use std::collections::HashMap;
use std::io::{BufReader, BufWriter};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use vettid_client::vault::VaultClient;
use vettid_proto::channel::{Frame, Kind, Received, from_body, to_body};
use vettid_proto::enclave::{EnclaveReply, HostReply, Outbound, ToEnclave, ToHost, VaultError};
use vettid_proto::session::Channel;

/// What the script decides for one request of the enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Do what an honest host does.
    Honest,
    /// Answer this instead (a lie).
    Answer(HostReply),
}

/// The test's say over each request the enclave makes: it sees the request and the store
/// (which it may change first), and decides the answer.
pub type Script = Box<dyn FnMut(&ToHost, &mut Store) -> Action + Send>;

/// How to run the enclave.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `vettid-enclave` binary.
    pub enclave: PathBuf,
    /// Its arguments besides `--socket`.
    pub enclave_args: Vec<String>,
    /// A directory for the channel socket.
    pub dir: PathBuf,
    /// The dev platform's socket (attestation, key service), for honest relays.
    pub platform: PathBuf,
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
    platform: PathBuf,
}

/// A hostile host around a real enclave process. Dropping it kills the enclave.
pub struct AdversarialHost {
    inner: Arc<Inner>,
    options: Options,
    listener: UnixListener,
    child: Mutex<Option<Child>>,
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
                platform: options.platform.clone(),
            }),
            options,
            listener,
            child: Mutex::new(None),
        };
        host.launch()?;
        Ok(host)
    }

    fn launch(&self) -> std::io::Result<()> {
        let socket = self.options.dir.join("enclave.sock");
        let child = Command::new(&self.options.enclave)
            .arg("--socket")
            .arg(&socket)
            .args(&self.options.enclave_args)
            .spawn()?;
        *lock(&self.child) = Some(child);
        let (stream, _) = self.listener.accept()?;
        let reader = BufReader::new(stream.try_clone()?);
        *lock(&self.inner.writer) = Some(BufWriter::new(stream));
        let inner = self.inner.clone();
        std::thread::spawn(move || read_loop(&inner, reader));
        Ok(())
    }

    /// Kills the enclave (`kill -9`) and starts a new one: everything it held in memory is
    /// gone, storage stays as the host keeps it.
    pub fn restart_enclave(&self) -> std::io::Result<()> {
        if let Some(mut c) = lock(&self.child).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        *lock(&self.inner.writer) = None;
        lock(&self.inner.pending).clear();
        self.launch()
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
        if let Some(mut c) = lock(&self.child).take() {
            let _ = c.kill();
            let _ = c.wait();
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
        Ok(EnclaveReply::App { body, events }) => {
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
        relayed => relay(&inner.platform, &relayed)
            .unwrap_or_else(|e| HostReply::Error(format!("platform: {e}"))),
    }
}

/// Passes a platform request (attestation, key service) to the dev platform, unread.
fn relay(platform: &std::path::Path, request: &ToHost) -> std::io::Result<HostReply> {
    let mut stream = UnixStream::connect(platform)?;
    Frame {
        kind: Kind::Request,
        id: 1,
        body: to_body(request),
    }
    .write_to(&mut stream)?;
    let answer = Frame::read_from(&mut stream).map_err(std::io::Error::other)?;
    from_body(&answer.body).map_err(std::io::Error::other)
}
