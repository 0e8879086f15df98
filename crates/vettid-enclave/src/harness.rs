//! An in-process host for unit tests: the enclave's own link over a socket pair, served by a
//! thread that keeps objects in memory, and a sealer that needs no key service. The same code
//! paths as the process (link, objects, keys, vault, manager), none of its transport.

use crate::link::Link;
use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use vettid_attest::seal::{SealError, Sealer};
use vettid_crypto::aead::AeadKey;
use vettid_proto::channel::{Frame, Kind, Received, from_body, to_body};
use vettid_proto::enclave::{HostReply, ToHost};
use zeroize::Zeroizing;

/// Objects by name, shared with the serving thread.
pub(crate) type Store = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A link to an honest in-memory host.
pub(crate) fn host() -> (Arc<Link>, Store) {
    let (enclave, mut host) = UnixStream::pair().unwrap();
    let link = Link::new(Box::new(enclave.try_clone().unwrap()), Box::new(enclave));
    let store: Store = Arc::default();
    let objects = store.clone();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(host.try_clone().unwrap());
        loop {
            let (id, body) = match Received::from(Frame::read_from(&mut reader)) {
                Received::Request { id, body: Ok(b) } => (id, b),
                Received::Closed => return,
                _ => continue,
            };
            let reply = match from_body::<ToHost>(&body) {
                Ok(request) => serve(&objects, request),
                Err(_) => HostReply::Error("malformed".into()),
            };
            let frame = Frame {
                kind: Kind::Response,
                id,
                body: to_body(&reply),
            };
            if frame.write_to(&mut host).is_err() {
                return;
            }
        }
    });
    // Workers read the link in turn; a test thread calling through it reads for itself.
    (link, store)
}

fn serve(store: &Store, request: ToHost) -> HostReply {
    let mut s = store.lock().unwrap();
    match request {
        ToHost::Get { name } => HostReply::Object(s.get(&name).cloned()),
        ToHost::PutCreate { name, bytes } => match s.entry(name) {
            std::collections::btree_map::Entry::Occupied(_) => HostReply::AlreadyExists,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(bytes);
                HostReply::Created
            }
        },
        ToHost::List { prefix } => HostReply::Names(
            s.keys()
                .filter(|k| k.starts_with(&prefix))
                .cloned()
                .collect(),
        ),
        ToHost::Delete { names } => {
            for n in names {
                s.remove(&n);
            }
            HostReply::Done
        }
        ToHost::Now => HostReply::Now(1_800_000_000_000),
        _ => HostReply::Error("no key service in unit tests".into()),
    }
}

/// Seals under a key of its own (unit tests need no key service).
pub(crate) struct TestSealer(AeadKey);

impl TestSealer {
    pub(crate) fn new() -> Self {
        TestSealer(AeadKey::generate())
    }
}

impl Sealer for TestSealer {
    fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        Ok(self.0.seal(context, plaintext))
    }
    fn unseal(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.0
            .open(context, sealed)
            .map_err(|_| SealError::DecryptionFailed)
    }
}

/// A manager over an honest in-memory host, with the cheapest stretching.
pub(crate) fn manager(policy: crate::keys::KeyPolicy) -> (crate::manager::Manager, Store) {
    let (link, store) = host();
    let config = crate::manager::Config {
        policy: crate::manager::Policy {
            keys: policy,
            ..Default::default()
        },
        ..Default::default()
    };
    (
        crate::manager::Manager::new(link, Box::new(TestSealer::new()), config),
        store,
    )
}

/// The cheapest policy the bounds allow, with `max_failures`.
pub(crate) fn fast(max_failures: u32) -> crate::keys::KeyPolicy {
    crate::keys::KeyPolicy {
        max_failures,
        cost: vettid_crypto::password::Cost {
            memory_kib: 19 * 1024,
            passes: 2,
            lanes: 1,
        },
    }
}

/// A vault enrolled in an in-memory manager and the proof of its unlock: what domain unit tests
/// drive their handlers through ([`crate::manager::Manager::domain`], as a session does).
pub(crate) struct Opened {
    pub(crate) manager: crate::manager::Manager,
    pub(crate) opening: crate::manager::Opening,
    /// The credential blob enrollment made (password verifier: 32 zero bytes).
    pub(crate) credential: Vec<u8>,
    /// The in-memory host's objects (a test may play the hostile host with them).
    pub(crate) store: Store,
    /// The recovery phrase enrollment showed.
    pub(crate) phrase: Zeroizing<[u8; vettid_proto::session::RECOVERY_BYTES]>,
}

impl Opened {
    /// Vault `alice`, enrolled (PIN `1111`) and unlocked by that enrollment.
    pub(crate) fn new() -> Opened {
        let (manager, store) = manager(fast(10));
        let device = crate::manager::NewDevice {
            session_key: [1; 32],
            device_key: [9; 32],
            name: "phone",
        };
        let enrolled = manager
            .enroll("alice", b"1111", &[0; 32], device, 0)
            .unwrap();
        Opened {
            manager,
            opening: enrolled.opening,
            credential: enrolled.credential,
            store,
            phrase: enrolled.recovery_phrase,
        }
    }

    /// Runs `f` on the unlocked vault as one operation at `now_ms`; its answer.
    pub(crate) fn run<T>(
        &self,
        now_ms: u64,
        f: impl FnOnce(
            &mut crate::manager::UnlockedVault<'_>,
        ) -> Result<T, vettid_proto::enclave::VaultError>,
    ) -> Result<T, vettid_proto::enclave::VaultError> {
        self.manager
            .domain("alice", &self.opening, now_ms, f)
            .and_then(|(answer, _)| answer)
    }
}

/// An attestor for unit tests: empty documents (the session's rules are under test here;
/// documents are checked in `vettid-attest` and by the process-level suites).
pub(crate) struct NoDocuments;

impl vettid_attest::seal::Attestor for NoDocuments {
    fn attest(&self, _: &vettid_attest::AttestRequest) -> Result<Vec<u8>, SealError> {
        Ok(Vec::new())
    }
}

/// An app in process: the enclave's [`crate::session::Sessions`] and manager driven with the
/// messages an app sends, through the same `handle` the process serves (no NATS, no host).
pub(crate) struct App<'a> {
    sessions: &'a crate::session::Sessions,
    manager: &'a crate::manager::Manager,
    member: String,
    channel: vettid_proto::session::Channel,
    id: vettid_proto::session::SessionId,
    transport: vettid_crypto::noise::StatelessTransportState,
    counter: u64,
}

impl<'a> App<'a> {
    /// Runs the handshake for `member` on `channel` with the static key `device`.
    pub(crate) fn open(
        sessions: &'a crate::session::Sessions,
        manager: &'a crate::manager::Manager,
        member: &str,
        channel: vettid_proto::session::Channel,
        device: &vettid_crypto::SecretBytes<32>,
    ) -> Result<App<'a>, vettid_proto::session::SessionError> {
        use vettid_crypto::noise;
        use vettid_proto::session::{FromApp, ToApp, prologue};
        let (noise_public, kem_public) = sessions.public_keys();
        let (ciphertext, psk) = noise::encapsulate(&kem_public).unwrap();
        let mut hs =
            noise::initiator(&prologue(member, channel), device, &noise_public, &psk).unwrap();
        let mut buf = vec![0u8; noise::MAX_MESSAGE];
        let n = hs.write_message(&ciphertext, &mut buf).unwrap();
        let send = |m: &FromApp| {
            let body = postcard::to_allocvec(m).unwrap();
            sessions.handle(manager, member, channel, now(), &body).0
        };
        let (id, msg) = match send(&FromApp::Hello {
            msg: buf[..n].to_vec(),
        }) {
            ToApp::Accept { session, msg } => (session, msg),
            ToApp::Refused(e) => return Err(e),
            other => panic!("{other:?}"),
        };
        let mut payload = vec![0u8; noise::MAX_MESSAGE];
        hs.read_message(&msg, &mut payload).unwrap();
        let n = hs.write_message(&[], &mut buf).unwrap();
        match send(&FromApp::Finish {
            session: id,
            msg: buf[..n].to_vec(),
        }) {
            ToApp::Established { .. } => {}
            ToApp::Refused(e) => return Err(e),
            other => panic!("{other:?}"),
        }
        Ok(App {
            sessions,
            manager,
            member: member.to_owned(),
            channel,
            id,
            transport: hs.into_stateless_transport_mode().unwrap(),
            counter: 0,
        })
    }

    /// Sends `op` with the next counter: the reply envelope, or the refusal outside it.
    pub(crate) fn call(
        &mut self,
        op: vettid_proto::session::AppOp,
    ) -> Result<vettid_proto::session::Reply, vettid_proto::session::SessionError> {
        self.counter += 1;
        self.send_at(self.counter, op)
    }

    /// Sends `op` with the chosen `counter` (to replay or reorder).
    pub(crate) fn send_at(
        &mut self,
        counter: u64,
        op: vettid_proto::session::AppOp,
    ) -> Result<vettid_proto::session::Reply, vettid_proto::session::SessionError> {
        use vettid_proto::session::{
            FromApp, Request, ToApp, VERSION, open_plaintext, seal_plaintext,
        };
        let plain = seal_plaintext(&Request {
            version: VERSION,
            id: counter,
            timestamp_ms: now(),
            op,
        });
        let mut ciphertext = vec![0u8; plain.len() + vettid_crypto::noise::TAG_LEN];
        let n = self
            .transport
            .write_message(counter, &plain, &mut ciphertext)
            .unwrap();
        ciphertext.truncate(n);
        let body = postcard::to_allocvec(&FromApp::Request {
            session: self.id,
            counter,
            ciphertext,
        })
        .unwrap();
        let (answer, _) =
            self.sessions
                .handle(self.manager, &self.member, self.channel, now(), &body);
        match answer {
            ToApp::Reply {
                counter: c,
                ciphertext,
            } => {
                assert_eq!(c, counter);
                let mut plain = vec![0u8; ciphertext.len()];
                let n = self
                    .transport
                    .read_message(counter, &ciphertext, &mut plain)
                    .unwrap();
                Ok(open_plaintext(&plain[..n]).unwrap())
            }
            ToApp::Refused(e) => Err(e),
            other => panic!("{other:?}"),
        }
    }
}

/// The host's clock, as the process passes it (the tests' requests are stamped with it).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
