//! The enclave's main loop: connect to the host, answer its requests on a pool of workers,
//! evict idle vaults in the background.

use crate::link::{Incoming, Link};
use crate::manager::{Config, Manager};
use crate::session::Sessions;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use vettid_attest::seal::Attestor;
use vettid_proto::channel::{from_body, to_body};
use vettid_proto::enclave::{EnclaveReply, Invalid, ToEnclave, VaultError};

/// Worker threads answering host requests.
const WORKERS: usize = 8;
/// Janitor passes (500 ms each) between checks for scheduled backups.
const BACKUP_PASSES: u64 = 120;

/// Serves the host over a connected stream (its read and write halves) until it closes.
/// Documents come from `device`; sealing keys from the key service that `trust` names, over
/// TLS through the host.
pub fn serve(
    reader: Box<dyn Read + Send>,
    writer: Box<dyn Write + Send>,
    config: Config,
    device: Arc<dyn Attestor + Send + Sync>,
    trust: vettid_attest::seal::kms::Trust,
) -> std::io::Result<()> {
    let link = Link::new(reader, writer);
    let keys =
        vettid_attest::seal::kms::KmsClient::new(crate::link::KeyServiceRelay(link.clone()), trust)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    let sealer = vettid_attest::seal::RecipientSealer::new(device.clone(), keys);
    let manager = Arc::new(Manager::new(link.clone(), Box::new(sealer), config));
    let sessions = Arc::new(Sessions::new(device));
    let janitor = {
        let (manager, sessions) = (Arc::downgrade(&manager), Arc::downgrade(&sessions));
        std::thread::Builder::new()
            .name("evictor".into())
            .spawn(move || {
                let mut pass: u64 = 0;
                while let (Some(m), Some(s)) = (manager.upgrade(), sessions.upgrade()) {
                    // Scheduled backups about once a minute, by the time the apps' requests
                    // carried and this enclave's own clock since (never the host's alone). A
                    // bug must not stop this thread's other work: it is caught.
                    if pass.is_multiple_of(BACKUP_PASSES)
                        && let Some(now_ms) = m.trusted_now()
                    {
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            m.scheduled_backups(now_ms)
                        }));
                    }
                    pass += 1;
                    m.evict_idle();
                    s.sweep();
                    drop((m, s));
                    std::thread::sleep(Duration::from_millis(500));
                }
            })?
    };
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let (link, manager, sessions) = (link.clone(), manager.clone(), sessions.clone());
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || work(&link, &manager, &sessions))
        })
        .collect::<Result<_, _>>()?;
    for w in workers {
        let _ = w.join();
    }
    drop((manager, sessions));
    let _ = janitor.join();
    Ok(())
}

/// The debug path (`vettid vault …` through the host) exists only in development builds, and
/// even there never reaches a vault an app owns (the manager checks that).
fn debug_path() -> Result<(), VaultError> {
    if cfg!(feature = "nitro") {
        return Err(Invalid::NoDebugPath.into());
    }
    Ok(())
}

/// Ends `vault`'s sessions and shreds it ([`Manager::shred`]); the objects deleted.
pub(crate) fn shred(
    manager: &Manager,
    sessions: &Sessions,
    vault: &str,
) -> Result<u64, VaultError> {
    sessions.end_member(vault);
    manager.shred(vault)
}

/// A message from another vault for `member`'s ([`ToEnclave::Peer`]): handled while the vault
/// is open to its peers, else kept for later by the host (a batch of one, [`peers`]).
pub(crate) fn peer(
    manager: &Manager,
    member: &str,
    now_ms: u64,
    body: &[u8],
) -> Result<EnclaveReply, VaultError> {
    use vettid_proto::enclave::{PeerDisposition, PeerRest};
    match peers(manager, member, now_ms, &[body])? {
        EnclaveReply::Peers { done: 1, out, .. } => Ok(EnclaveReply::Peer {
            disposition: PeerDisposition::Done,
            out,
        }),
        EnclaveReply::Peers {
            rest: Some(PeerRest::Retry),
            ..
        } => Err(VaultError::Internal(
            "the message could not be taken now".into(),
        )),
        _ => Ok(EnclaveReply::Peer {
            disposition: PeerDisposition::Later,
            out: Vec::new(),
        }),
    }
}

/// Messages from other vaults for `member`'s ([`ToEnclave::Peers`]), in order, durable
/// together ([`Manager::peers`]).
pub(crate) fn peers(
    manager: &Manager,
    member: &str,
    now_ms: u64,
    bodies: &[impl AsRef<[u8]>],
) -> Result<EnclaveReply, VaultError> {
    use vettid_proto::enclave::{MAX_PEER_BATCH, MAX_PEER_BATCH_BYTES};
    let bytes: usize = bodies.iter().map(|b| b.as_ref().len()).sum();
    if bodies.len() > MAX_PEER_BATCH || (bodies.len() > 1 && bytes > MAX_PEER_BATCH_BYTES) {
        return Err(Invalid::Malformed.into());
    }
    let batch = manager.peers(member, now_ms, bodies, crate::connections::receive)?;
    Ok(EnclaveReply::Peers {
        done: batch.done,
        rest: batch.rest,
        out: batch.out,
    })
}

/// Runs `f`, a panic in it answered as `Internal`: a bug must cost one request, not a worker
/// (the pool is not refilled).
fn caught<T>(f: impl FnOnce() -> Result<T, VaultError>) -> Result<T, VaultError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(VaultError::Internal("request failed".into())))
}

fn work(link: &Link, manager: &Manager, sessions: &Sessions) {
    while let Some(Incoming { id, body }) = link.next_request() {
        let (reply, follow_up) = match body
            .ok()
            .and_then(|b| from_body::<ToEnclave>(&b).ok())
            .ok_or(VaultError::Invalid(Invalid::Malformed))
        {
            Ok(ToEnclave::Ping) => (Ok(EnclaveReply::Pong), None),
            Ok(ToEnclave::Stats) => (Ok(manager.stats()), None),
            Ok(ToEnclave::Vault { vault, op }) => {
                let r = caught(|| {
                    debug_path()?;
                    manager.handle(&vault, op)
                });
                let maintain = matches!(r, Ok(EnclaveReply::Written(_))).then_some(vault);
                (r, maintain)
            }
            Ok(ToEnclave::App {
                member,
                channel,
                now_ms,
                body,
            }) => {
                let r = caught(|| Ok(sessions.handle(manager, &member, channel, now_ms, &body)))
                    .map(|(answer, events)| EnclaveReply::App {
                        body: to_body(&answer),
                        events,
                        open: manager.accepts_peers(&member),
                    });
                // A vault operation may have written: snapshot after answering, if due.
                (r, Some(member))
            }
            Ok(ToEnclave::Shred { vault }) => {
                let r = caught(|| shred(manager, sessions, &vault))
                    .map(|objects| EnclaveReply::Shredded { objects });
                (r, None)
            }
            Ok(ToEnclave::Peer {
                member,
                now_ms,
                body,
            }) => {
                let r = caught(|| peer(manager, &member, now_ms, &body));
                (r, Some(member))
            }
            Ok(ToEnclave::Peers {
                member,
                now_ms,
                bodies,
            }) => {
                let r = caught(|| peers(manager, &member, now_ms, &bodies));
                (r, Some(member))
            }
            Err(e) => (Err(e), None),
        };
        link.respond(id, to_body(&reply));
        if let Some(vault) = follow_up {
            // A bug here too must cost this snapshot, not a worker.
            let _ =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| manager.maintain(&vault)));
        }
    }
}
