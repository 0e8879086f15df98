//! The enclave's end of the app session (`docs/PROTOCOL.md`): attestation for a nonce, the
//! Noise `XKpsk3` handshake hybridised with X-Wing, and the typed envelope with its replay,
//! ordering and freshness checks. The host passes these messages through unread.
//!
//! State machine per session, keyed by (member, session id):
//!
//! ```text
//! Hello ──► Pending{handshake, channel}  ──Finish──► Open{transport, device, last counter}
//!            (expires after PENDING_TTL)               (expires after IDLE_TTL unused)
//! ```
//!
//! Sessions live in enclave memory only: an enclave restart ends them all and apps handshake
//! again. Keys (Noise static X25519 and X-Wing) are made at start and bound into every
//! attestation document this enclave hands out.

use crate::manager::Manager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use vettid_crypto::noise::{self, HandshakeState, KemSecret, StatelessTransportState};
use vettid_proto::enclave::{Invalid, Outbound, SignedVersion, VaultError, valid_vault_id};
use vettid_proto::session::{
    AppOp, AppReply, Channel, Enrolled, Event, EventKind, FromApp, MAX_SKEW_MS, Recovered,
    RecoveryProof, Reply, Request, SealedEvent, SessionError, SessionId, ToApp, VERSION,
    decode_exact, event_aad, kem_binding, open_plaintext, prologue, seal_plaintext,
};
use zeroize::Zeroizing;

/// A handshake must finish within this time.
const PENDING_TTL: Duration = Duration::from_secs(30);
/// An open session unused for this long is forgotten.
const IDLE_TTL: Duration = Duration::from_secs(30 * 60);
/// Handshakes in progress, across all members (a flood costs the flooder, not the enclave).
const MAX_PENDING: usize = 4096;
/// Open sessions, across all members.
const MAX_OPEN: usize = 100_000;
/// Handshakes in progress per member: a new one beyond this replaces the member's oldest.
const MEMBER_PENDING: usize = 4;
/// Open sessions per member: a new one beyond this replaces the member's least recently used,
/// so no member can take the enclave's session slots from the others.
const MEMBER_OPEN: usize = 16;

type Key = (String, SessionId);

struct Pending {
    handshake: HandshakeState,
    channel: Channel,
    since: Instant,
}

struct Open {
    transport: StatelessTransportState,
    channel: Channel,
    device: [u8; 32],
    /// The vault's opening number when the PIN was given in this session: vault data is open
    /// only to the session whose unlock is still the current one (no lock or later unlock since).
    unlocked: Option<crate::manager::Opening>,
    /// The highest state this session's app showed it had seen ([`AppOp::Anchor`]).
    seen: Option<crate::vault::Head>,
    /// The highest counter accepted so far (0: none; counters start at 1).
    last_counter: u64,
    last_used: Instant,
}

/// Every session of this enclave instance.
pub struct Sessions {
    attestor: Arc<dyn vettid_attest::seal::Attestor + Send + Sync>,
    noise_secret: SecretBytes<32>,
    noise_public: [u8; 32],
    kem: KemSecret,
    kem_public: Vec<u8>,
    pending: Mutex<HashMap<Key, Pending>>,
    open: Mutex<HashMap<Key, Arc<Mutex<Open>>>>,
}

/// What one app message produced: the answer, and events to publish.
pub type Outcome = (ToApp, Vec<Outbound>);

/// What an operation may read and change of its session.
struct SessionState<'a> {
    device: [u8; 32],
    unlocked: &'a mut Option<crate::manager::Opening>,
    seen: &'a mut Option<crate::vault::Head>,
}

impl Sessions {
    /// New session keys for this enclave instance; documents binding them come from `attestor`
    /// (the enclave's device).
    pub fn new(attestor: Arc<dyn vettid_attest::seal::Attestor + Send + Sync>) -> Self {
        let noise_secret = SecretBytes::random();
        let kem = KemSecret::generate();
        Self {
            attestor,
            noise_public: noise::public_key(&noise_secret),
            noise_secret,
            kem_public: kem.public_key(),
            kem,
            pending: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The session keys (the attestation documents bind them; unit tests take them directly).
    #[cfg(test)]
    pub(crate) fn public_keys(&self) -> ([u8; 32], Vec<u8>) {
        (self.noise_public, self.kem_public.clone())
    }

    /// Handles one message an app sent on `OwnerSpace.<member>.forVault.<channel>`.
    pub fn handle(
        &self,
        manager: &Manager,
        member: &str,
        channel: Channel,
        now_ms: u64,
        body: &[u8],
    ) -> Outcome {
        let refused = |e| (ToApp::Refused(e), Vec::new());
        if !valid_vault_id(member) {
            return refused(SessionError::Malformed);
        }
        let Some(message) = decode_exact::<FromApp>(body) else {
            return refused(SessionError::Malformed);
        };
        let result = match (message, channel) {
            (FromApp::Attest { nonce }, Channel::Attestation) => self.attest(&nonce),
            (FromApp::Hello { msg }, Channel::Enroll | Channel::Session) => {
                self.hello(member, channel, &msg)
            }
            (FromApp::Finish { session, msg }, Channel::Enroll | Channel::Session) => {
                self.finish(manager, member, channel, session, &msg)
            }
            (
                FromApp::Request {
                    session,
                    counter,
                    ciphertext,
                },
                Channel::Enroll | Channel::Session,
            ) => {
                return self
                    .request(
                        manager,
                        member,
                        channel,
                        now_ms,
                        session,
                        counter,
                        &ciphertext,
                    )
                    .unwrap_or_else(refused);
            }
            _ => Err(SessionError::WrongChannel),
        };
        (result.unwrap_or_else(ToApp::Refused), Vec::new())
    }

    fn attest(&self, nonce: &[u8; 32]) -> Result<ToApp, SessionError> {
        // From the enclave's own device: the host is never asked for a document.
        let doc = self
            .attestor
            .attest(&vettid_attest::AttestRequest {
                nonce: Some(nonce.to_vec()),
                public_key: Some(self.noise_public.to_vec()),
                user_data: Some(kem_binding(&self.kem_public).to_vec()),
            })
            .map_err(|_| SessionError::AttestationUnavailable)?;
        Ok(ToApp::Attestation {
            doc,
            kem_public_key: self.kem_public.clone(),
        })
    }

    /// A document from the enclave's own device stating that it created `member`'s vault with
    /// `identity` and registered `session_key` with `device_key`
    /// ([`vettid_proto::auth::enrolled_device_binding`] as `user_data`; no nonce or key, which
    /// the documents for apps always carry).
    fn enrolled_attestation(
        &self,
        member: &str,
        session_key: &[u8; 32],
        device_key: &[u8; 32],
        identity: &[u8; 32],
    ) -> Result<Vec<u8>, VaultError> {
        self.document(vettid_proto::auth::enrolled_device_binding(
            member,
            session_key,
            device_key,
            identity,
        ))
    }

    /// A document from the enclave's own device with `binding` as `user_data` and no nonce or
    /// key (the documents for apps always carry both): the enclave's word to the API.
    fn document(&self, binding: [u8; 32]) -> Result<Vec<u8>, VaultError> {
        self.attestor
            .attest(&vettid_attest::AttestRequest {
                nonce: None,
                public_key: None,
                user_data: Some(binding.to_vec()),
            })
            .map_err(|_| VaultError::Internal("no attestation document for the device".into()))
    }

    fn hello(&self, member: &str, channel: Channel, msg: &[u8]) -> Result<ToApp, SessionError> {
        let mut handshake = noise::responder(&prologue(member, channel), &self.noise_secret)
            .map_err(|_| SessionError::Crypto)?;
        let mut payload = vec![0u8; noise::MAX_MESSAGE];
        let n = handshake
            .read_message(msg, &mut payload)
            .map_err(|_| SessionError::Crypto)?;
        let psk = self
            .kem
            .decapsulate(&payload[..n])
            .ok_or(SessionError::Crypto)?;
        handshake
            .set_psk(3, psk.expose())
            .map_err(|_| SessionError::Crypto)?;
        let mut reply = vec![0u8; noise::MAX_MESSAGE];
        let n = handshake
            .write_message(&[], &mut reply)
            .map_err(|_| SessionError::Crypto)?;
        reply.truncate(n);
        let session: SessionId = vettid_crypto::random_array();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mine: Vec<(Instant, SessionId)> = pending
            .iter()
            .filter(|((m, _), _)| m == member)
            .map(|((_, id), p)| (p.since, *id))
            .collect();
        if mine.len() >= MEMBER_PENDING
            && let Some((_, oldest)) = mine.iter().min()
        {
            pending.remove(&(member.to_owned(), *oldest));
        }
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| p.since.elapsed() < PENDING_TTL);
            if pending.len() >= MAX_PENDING {
                return Err(SessionError::Busy);
            }
        }
        pending.insert(
            (member.to_owned(), session),
            Pending {
                handshake,
                channel,
                since: Instant::now(),
            },
        );
        Ok(ToApp::Accept {
            session,
            msg: reply,
        })
    }

    fn finish(
        &self,
        manager: &Manager,
        member: &str,
        channel: Channel,
        session: SessionId,
        msg: &[u8],
    ) -> Result<ToApp, SessionError> {
        let key = (member.to_owned(), session);
        let Pending {
            mut handshake,
            channel: started_on,
            since,
        } = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
            .ok_or(SessionError::UnknownSession)?;
        if since.elapsed() >= PENDING_TTL {
            return Err(SessionError::UnknownSession);
        }
        if started_on != channel {
            return Err(SessionError::WrongChannel);
        }
        let mut payload = vec![0u8; noise::MAX_MESSAGE];
        handshake
            .read_message(msg, &mut payload)
            .map_err(|_| SessionError::Crypto)?;
        let device: [u8; 32] = handshake
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or(SessionError::Crypto)?;
        // An enrolled app's device must be registered before it may try a PIN.
        if channel == Channel::Session && !manager.has_device(member, &device).unwrap_or(false) {
            return Err(SessionError::DeviceNotRegistered);
        }
        let transport = handshake
            .into_stateless_transport_mode()
            .map_err(|_| SessionError::Crypto)?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine: Vec<(Instant, SessionId)> = open
            .iter()
            .filter(|((m, _), _)| m == member)
            .map(|((_, id), s)| {
                // A session in use right now counts as the most recent.
                let used = s
                    .try_lock()
                    .map_or_else(|_| Instant::now(), |s| s.last_used);
                (used, *id)
            })
            .collect();
        if mine.len() >= MEMBER_OPEN
            && let Some((_, oldest)) = mine.iter().min()
        {
            open.remove(&(member.to_owned(), *oldest));
        }
        if open.len() >= MAX_OPEN {
            return Err(SessionError::Busy);
        }
        open.insert(
            key,
            Arc::new(Mutex::new(Open {
                transport,
                channel,
                device,
                unlocked: None,
                seen: None,
                last_counter: 0,
                last_used: Instant::now(),
            })),
        );
        Ok(ToApp::Established { session })
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        manager: &Manager,
        member: &str,
        channel: Channel,
        now_ms: u64,
        session: SessionId,
        counter: u64,
        ciphertext: &[u8],
    ) -> Result<Outcome, SessionError> {
        let entry = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(member.to_owned(), session))
            .cloned()
            .ok_or(SessionError::UnknownSession)?;
        let mut open = entry.lock().unwrap_or_else(|p| p.into_inner());
        if open.channel != channel {
            return Err(SessionError::WrongChannel);
        }
        // A device removed since the handshake (a recovery re-keyed the vault to another)
        // has no session any more: checked on every request, against the newest keys record.
        if channel == Channel::Session && !manager.has_device(member, &open.device).unwrap_or(false)
        {
            drop(open);
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(member.to_owned(), session));
            return Err(SessionError::DeviceNotRegistered);
        }
        if counter <= open.last_counter {
            return Err(SessionError::Replayed);
        }
        let mut plain = vec![0u8; ciphertext.len()];
        let n = open
            .transport
            .read_message(counter, ciphertext, &mut plain)
            .map_err(|_| SessionError::Crypto)?;
        // Authentic: from now on nothing at or below this counter is accepted.
        open.last_counter = counter;
        open.last_used = Instant::now();
        let request: Option<Request> = open_plaintext(&plain[..n]);
        zeroize::Zeroize::zeroize(&mut plain);
        let request = request.ok_or(SessionError::Malformed)?;
        if request.version != VERSION || request.id != counter {
            return Err(SessionError::BadEnvelope);
        }
        if request.timestamp_ms.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(SessionError::Stale);
        }
        manager.app_time(request.timestamp_ms);
        let device = open.device;
        let open = &mut *open;
        let (result, events, vault_version) = self.run(
            manager,
            member,
            channel,
            SessionState {
                device,
                unlocked: &mut open.unlocked,
                seen: &mut open.seen,
            },
            now_ms,
            request.op,
        );
        let reply = zeroize::Zeroizing::new(seal_plaintext(&Reply {
            version: VERSION,
            id: counter,
            result,
            vault_version,
        }));
        let mut out = vec![0u8; reply.len() + noise::TAG_LEN];
        let n = open
            .transport
            .write_message(counter, &reply, &mut out)
            .map_err(|_| SessionError::Crypto)?;
        out.truncate(n);
        Ok((
            ToApp::Reply {
                counter,
                ciphertext: out,
            },
            events,
        ))
    }

    /// Runs one operation of an authenticated request.
    fn run(
        &self,
        manager: &Manager,
        member: &str,
        channel: Channel,
        session: SessionState<'_>,
        now_ms: u64,
        op: AppOp,
    ) -> (
        Result<AppReply, VaultError>,
        Vec<Outbound>,
        Option<SignedVersion>,
    ) {
        let SessionState {
            device,
            unlocked,
            seen,
        } = session;
        let mut events = Vec::new();
        // Every answer about the vault's state shows the app its signed version (taken with the
        // answer, under the vault's lock), so the app checks reads for rollback as well as
        // writes.
        let mut version = None;
        let result = match (op, channel) {
            (
                AppOp::Enroll {
                    device: binding, ..
                },
                Channel::Enroll,
            ) if !binding.verify(member, &device) => Err(Invalid::DeviceBinding.into()),
            (
                AppOp::Enroll {
                    pin,
                    password_verifier,
                    device_name,
                    device: binding,
                },
                Channel::Enroll,
            ) => manager
                .enroll(
                    member,
                    &pin,
                    &password_verifier,
                    crate::manager::NewDevice {
                        session_key: device,
                        device_key: binding.device_key,
                        name: &device_name,
                    },
                    now_ms,
                )
                .and_then(|e| {
                    *unlocked = Some(e.opening);
                    version = Some(e.version.clone());
                    let device_attestation = self.enrolled_attestation(
                        member,
                        &device,
                        &binding.device_key,
                        &e.identity,
                    )?;
                    Ok(AppReply::Enrolled(Box::new(Enrolled {
                        identity_public_key: e.identity,
                        exchange_public_key: e.exchange,
                        credential: e.credential,
                        event_key: Zeroizing::new(*e.event_key.expose()),
                        version: e.version,
                        recovery_phrase: e.recovery_phrase,
                        device_attestation,
                    })))
                }),
            (
                AppOp::Recover {
                    device: binding, ..
                },
                Channel::Enroll,
            ) if !binding.verify(member, &device) => Err(Invalid::DeviceBinding.into()),
            (
                AppOp::Recover {
                    proof,
                    password_verifier,
                    device_name,
                    device: binding,
                },
                Channel::Enroll,
            ) => {
                let proof = match &proof {
                    RecoveryProof::Pin(pin) => crate::keys::RecoveryProof::Pin(pin),
                    RecoveryProof::Phrase { phrase, new_pin } => {
                        crate::keys::RecoveryProof::Phrase { phrase, new_pin }
                    }
                };
                let new_device = crate::manager::NewDevice {
                    session_key: device,
                    device_key: binding.device_key,
                    name: &device_name,
                };
                manager
                    .recover(member, proof, &password_verifier, new_device, now_ms)
                    .and_then(|r| {
                        *unlocked = Some(r.opening);
                        version = Some(r.version.clone());
                        let device_attestation =
                            self.document(vettid_proto::auth::recovered_device_binding(
                                member,
                                &device,
                                &binding.device_key,
                                &r.identity,
                            ))?;
                        Ok(AppReply::Recovered(Box::new(Recovered {
                            identity_public_key: r.identity,
                            exchange_public_key: r.exchange,
                            credential: r.credential,
                            event_key: Zeroizing::new(*r.event_key.expose()),
                            version: r.version,
                            removed_devices: r.removed,
                            device_attestation,
                        })))
                    })
            }
            (AppOp::Ping, _) => Ok(AppReply::Pong),
            (_, Channel::Enroll) | (AppOp::Enroll { .. } | AppOp::Recover { .. }, _) => {
                Err(Invalid::WrongChannel.into())
            }
            (AppOp::Unlock { pin }, _) => {
                let opener = crate::manager::Opener::Pin(&pin);
                let u = manager.unlock_for_app(member, opener, &device, *seen, now_ms);
                opened_by(
                    u,
                    member,
                    device,
                    now_ms,
                    unlocked,
                    &mut version,
                    &mut events,
                )
            }
            (AppOp::ResetPin { phrase, new_pin }, _) => {
                let opener = crate::manager::Opener::Phrase {
                    phrase: &phrase,
                    new_pin: &new_pin,
                };
                let u = manager.unlock_for_app(member, opener, &device, *seen, now_ms);
                opened_by(
                    u,
                    member,
                    device,
                    now_ms,
                    unlocked,
                    &mut version,
                    &mut events,
                )
            }
            (AppOp::Anchor { seen: version }, _) => manager.anchor(member, &version).map(|head| {
                // The session keeps the highest anchor it was shown (a lower one adds nothing).
                if seen.is_none_or(|s| head.version > s.version) {
                    *seen = Some(head);
                }
                AppReply::Anchored
            }),
            (AppOp::Lock, _) => manager.lock_for_app(member).map(|key| {
                *unlocked = None;
                if let Some(key) = key {
                    events.push(seal_event(member, &key, now_ms, EventKind::Locked));
                }
                AppReply::Locked
            }),
            (AppOp::Status, _) => manager.status_for_app(member).inspect(|r| {
                if let AppReply::Status { version: v, .. } = r {
                    version.clone_from(v);
                }
            }),
            // Vault data: only with the proof of this session's unlock, which the manager
            // checks is still current under the vault's lock.
            (AppOp::Feed(op), _) => domain(manager, member, unlocked, now_ms, &mut version, |u| {
                crate::feed::handle(u, op)
            })
            .map(|r| AppReply::Feed(Box::new(r))),
            (
                AppOp::Credential {
                    blob,
                    verifier,
                    op,
                    request,
                },
                _,
            ) => {
                let request = crate::credential::Use {
                    blob: &blob,
                    verifier: &verifier,
                    op: &op,
                    request: &request,
                };
                opened(unlocked)
                    .and_then(|o| {
                        manager.gated(member, o, |gate| {
                            crate::credential::use_credential(gate, &request, now_ms)
                        })
                    })
                    .map(|r| {
                        version = Some(r.version.clone());
                        AppReply::Credential(Box::new(r))
                    })
            }
            (AppOp::Profile(op), _) => {
                domain(manager, member, unlocked, now_ms, &mut version, |u| {
                    crate::profile::handle(u, op)
                })
                .map(|(r, out)| {
                    events.extend(out);
                    AppReply::Profile(Box::new(r))
                })
            }
            // Adding or removing a device re-keys the vault: the PIN again, and the enclave's
            // document for the API.
            (
                AppOp::Devices(
                    op @ (vettid_proto::devices::DeviceOp::Add { .. }
                    | vettid_proto::devices::DeviceOp::Remove { .. }),
                ),
                _,
            ) => opened(unlocked)
                .and_then(|o| self.change_device(manager, member, o, op, now_ms, &mut version)),
            (AppOp::Devices(op), _) => {
                domain(manager, member, unlocked, now_ms, &mut version, |u| {
                    crate::devices::handle(u, op)
                })
                .map(|r| AppReply::Devices(Box::new(r)))
            }
            (AppOp::Backup(op), _) => {
                domain(manager, member, unlocked, now_ms, &mut version, |u| {
                    crate::backup::handle(u, op)
                })
                .map(|r| AppReply::Backup(Box::new(r)))
            }
            (AppOp::Secrets(op), _) => {
                domain(manager, member, unlocked, now_ms, &mut version, |u| {
                    crate::secrets::handle(u, op)
                })
                .map(|r| AppReply::Secrets(Box::new(r)))
            }
            // What a connection or message operation sends other vaults goes out with the
            // events, before the answer.
            (AppOp::Connections(op), _) => {
                domain(manager, member, unlocked, now_ms, &mut version, |u| {
                    crate::connections::handle(u, op)
                })
                .map(|(r, out)| {
                    events.extend(out);
                    AppReply::Connections(Box::new(r))
                })
            }
            (AppOp::Messages(op), _) => {
                domain(manager, member, unlocked, now_ms, &mut version, |u| {
                    crate::messages::handle(u, op)
                })
                .map(|(r, out)| {
                    events.extend(out);
                    AppReply::Messages(Box::new(r))
                })
            }
            (AppOp::Whoami, _) => manager.whoami(member).map(|(identity, v)| {
                version.clone_from(&v);
                AppReply::Whoami {
                    member: member.to_owned(),
                    identity_public_key: identity,
                    device_public_key: device,
                    version: v,
                }
            }),
        };
        (result, events, version)
    }

    /// Adds or removes a device of `member`'s vault for the session whose unlock is `opening`
    /// ([`Manager::change_devices`], the PIN again) and answers with the device, the
    /// enclave's document naming it for the API (`device-added` or `device-removed`), and in
    /// `version` the vault's version after it (the removed device may be this session's own:
    /// its next request is refused).
    fn change_device(
        &self,
        manager: &Manager,
        member: &str,
        opening: &crate::manager::Opening,
        op: vettid_proto::devices::DeviceOp,
        now_ms: u64,
        version: &mut Option<SignedVersion>,
    ) -> Result<AppReply, VaultError> {
        use crate::manager::{DeviceChange, NewDevice};
        use vettid_proto::devices::{DeviceError, DeviceOp, DeviceReply};
        let added = matches!(op, DeviceOp::Add { .. });
        let (device, identity) = match op {
            DeviceOp::Add {
                pin,
                session_key,
                device_key,
                name,
            } => {
                let new = NewDevice {
                    session_key,
                    device_key,
                    name: &name,
                };
                manager.change_devices(member, opening, &pin, DeviceChange::Add(new), now_ms)?
            }
            DeviceOp::Remove { pin, device } => {
                let change = DeviceChange::Remove(device);
                manager.change_devices(member, opening, &pin, change, now_ms)?
            }
            DeviceOp::List | DeviceOp::Rename { .. } => return Err(Invalid::Malformed.into()),
        };
        let device_key = device.device_key.ok_or(DeviceError::NoDeviceKey)?;
        let binding = if added {
            vettid_proto::auth::added_device_binding
        } else {
            vettid_proto::auth::removed_device_binding
        };
        let device_attestation =
            self.document(binding(member, &device.session_key, &device_key, &identity))?;
        let (_, v) = manager.domain(member, opening, now_ms, |_| Ok(()))?;
        *version = Some(v);
        Ok(AppReply::Devices(Box::new(if added {
            DeviceReply::Added {
                device,
                device_attestation,
            }
        } else {
            DeviceReply::Removed {
                device,
                device_attestation,
            }
        })))
    }

    /// Ends every session and handshake of `member` (its vault was shredded): their next
    /// message finds no session.
    pub fn end_member(&self, member: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(m, _), _| m != member);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(m, _), _| m != member);
    }

    /// Forgets expired handshakes and idle sessions.
    pub fn sweep(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, p| p.since.elapsed() < PENDING_TTL);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| {
                s.try_lock()
                    .map_or(true, |s| s.last_used.elapsed() < IDLE_TTL)
            });
    }
}

/// This session's proof of unlock, or `NotUnlocked`.
/// Runs a domain handler with the session's proof of unlock (see `Manager::domain`); the
/// vault's signed version taken with the answer or refusal goes into `version`.
fn domain<T>(
    manager: &Manager,
    member: &str,
    unlocked: &Option<crate::manager::Opening>,
    now_ms: u64,
    version: &mut Option<SignedVersion>,
    handler: impl FnOnce(&mut crate::manager::UnlockedVault<'_>) -> Result<T, VaultError>,
) -> Result<T, VaultError> {
    let (answer, v) = manager.domain(member, opened(unlocked)?, now_ms, handler)?;
    *version = Some(v);
    answer
}

/// What an unlock (by PIN or recovery phrase) gives the session: its proof of the unlock, the
/// version, the event telling the member's apps, and the answer.
fn opened_by(
    result: Result<crate::manager::Unlocked, VaultError>,
    member: &str,
    device: [u8; 32],
    now_ms: u64,
    unlocked: &mut Option<crate::manager::Opening>,
    version: &mut Option<SignedVersion>,
    events: &mut Vec<Outbound>,
) -> Result<AppReply, VaultError> {
    let u = result.inspect_err(|_| *unlocked = None)?;
    *unlocked = Some(u.opening);
    *version = Some(u.version.clone());
    events.push(seal_event(
        member,
        &u.event_key,
        now_ms,
        EventKind::Unlocked {
            device_public_key: device,
        },
    ));
    Ok(AppReply::Unlocked {
        version: u.version,
        event_key: Zeroizing::new(*u.event_key.expose()),
    })
}

fn opened(
    unlocked: &Option<crate::manager::Opening>,
) -> Result<&crate::manager::Opening, VaultError> {
    unlocked.as_ref().ok_or(VaultError::NotUnlocked)
}

/// Seals an event for the member's apps.
pub(crate) fn seal_event(
    member: &str,
    key: &SecretBytes<32>,
    at_ms: u64,
    kind: EventKind,
) -> Outbound {
    let id: [u8; 16] = vettid_crypto::random_array();
    let plain = seal_plaintext(&Event { at_ms, kind });
    let sealed = SealedEvent {
        id,
        ciphertext: AeadKey::from(key.clone()).seal(&event_aad(member, &id), &plain),
    };
    Outbound {
        to: vettid_proto::enclave::Destination::App {
            token: vettid_proto::session::EVENT_TOKEN.to_owned(),
        },
        id: hex::encode(id),
        body: postcard::to_allocvec(&sealed).expect("sealed events always encode"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{App, NoDocuments, fast, manager};
    use vettid_proto::enclave::Invalid;
    use vettid_proto::secrets::{ItemContent, SecretData, SecretOp, SecretReply};

    const PIN: &[u8] = b"2468";

    fn unlock() -> AppOp {
        AppOp::Unlock {
            pin: Zeroizing::new(PIN.to_vec()),
        }
    }

    fn list() -> AppOp {
        AppOp::Secrets(SecretOp::List {
            after: None,
            name: None,
            tag: None,
            folder: None,
            deleted: false,
        })
    }

    fn create(name: &str) -> AppOp {
        AppOp::Secrets(SecretOp::Create(ItemContent {
            name: name.into(),
            folder: None,
            tags: vec![],
            data: SecretData::Note {
                text: vettid_proto::secrets::Secret::new("x"),
            },
            fields: vec![],
        }))
    }

    /// A manager and sessions with `alice` enrolled through the enroll channel by `device`.
    fn enrolled(device: &SecretBytes<32>) -> (Manager, Sessions) {
        let (m, _) = manager(fast(10));
        let sessions = Sessions::new(Arc::new(NoDocuments));
        enroll(&m, &sessions, device);
        (m, sessions)
    }

    /// Enrolls `device` into a new vault "alice".
    fn enroll(m: &Manager, sessions: &Sessions, device: &SecretBytes<32>) {
        let mut app = App::open(sessions, m, "alice", Channel::Enroll, device).unwrap();
        let key = vettid_crypto::sign::SigningKey::generate();
        let binding = vettid_proto::auth::DeviceBinding::sign(
            "alice",
            &vettid_crypto::noise::public_key(device),
            &key,
        );
        let r = app
            .call(AppOp::Enroll {
                pin: Zeroizing::new(PIN.to_vec()),
                password_verifier: Zeroizing::new([0; 32]),
                device_name: "phone".into(),
                device: binding,
            })
            .unwrap();
        assert!(matches!(r.result, Ok(AppReply::Enrolled(_))), "{r:?}");
        assert!(
            r.vault_version.is_some(),
            "enrollment shows the first version"
        );
    }

    /// A registered device adds another with the PIN (a wrong PIN changes nothing, and is
    /// counted), the new device then has sessions and unlocks; a device is removed with the
    /// PIN and its open session ends at once; the last device stays; at most eight.
    #[test]
    fn a_device_adds_another_with_the_pin_and_a_removed_one_loses_its_session() {
        use vettid_proto::devices::{DeviceError, DeviceOp, DeviceReply, MAX_DEVICES};
        let phone_key = SecretBytes::random();
        let (m, sessions) = enrolled(&phone_key);
        let mut phone = App::open(&sessions, &m, "alice", Channel::Session, &phone_key).unwrap();
        let laptop_key = SecretBytes::random();
        let laptop_public = vettid_crypto::noise::public_key(&laptop_key);
        let add = |pin: &[u8], session_key: [u8; 32], name: &str| {
            AppOp::Devices(DeviceOp::Add {
                pin: Zeroizing::new(pin.to_vec()),
                session_key,
                device_key: [7; 32],
                name: name.into(),
            })
        };
        assert_eq!(
            phone
                .call(add(PIN, laptop_public, "laptop"))
                .unwrap()
                .result,
            Err(VaultError::NotUnlocked),
            "only in an unlocked session"
        );
        assert!(matches!(
            phone.call(unlock()).unwrap().result,
            Ok(AppReply::Unlocked { .. })
        ));
        assert_eq!(
            phone
                .call(add(b"0000", laptop_public, "laptop"))
                .unwrap()
                .result,
            Err(VaultError::WrongPin { attempts_left: 9 }),
            "the PIN is counted"
        );
        assert_eq!(
            App::open(&sessions, &m, "alice", Channel::Session, &laptop_key).err(),
            Some(SessionError::DeviceNotRegistered),
            "a refused add registers nothing"
        );
        assert_eq!(
            phone
                .call(add(PIN, laptop_public, "bad\u{7}"))
                .unwrap()
                .result,
            Err(DeviceError::Name.into())
        );
        let r = phone.call(add(PIN, laptop_public, "laptop")).unwrap();
        assert!(
            matches!(&r.result, Ok(AppReply::Devices(d)) if matches!(**d, DeviceReply::Added { .. })),
            "{r:?}"
        );
        assert!(r.vault_version.is_some());
        assert_eq!(
            phone
                .call(add(PIN, laptop_public, "laptop"))
                .unwrap()
                .result,
            Err(DeviceError::AlreadyRegistered.into())
        );
        let mut laptop = App::open(&sessions, &m, "alice", Channel::Session, &laptop_key).unwrap();
        assert!(matches!(
            laptop.call(unlock()).unwrap().result,
            Ok(AppReply::Unlocked { .. })
        ));
        // (The laptop's unlock is now the vault's current one: the phone gives the PIN again.)
        assert!(matches!(
            phone.call(unlock()).unwrap().result,
            Ok(AppReply::Unlocked { .. })
        ));
        // Up to eight devices.
        for i in 2..MAX_DEVICES {
            let r = phone.call(add(PIN, [i as u8; 32], "spare")).unwrap();
            assert!(r.result.is_ok(), "{i}: {r:?}");
        }
        assert_eq!(
            phone
                .call(add(PIN, [99; 32], "one too many"))
                .unwrap()
                .result,
            Err(DeviceError::TooMany.into())
        );
        // The phone removes the laptop: its open session ends at its next request.
        let remove = |device: [u8; 32]| {
            AppOp::Devices(DeviceOp::Remove {
                pin: Zeroizing::new(PIN.to_vec()),
                device,
            })
        };
        let r = phone.call(remove(laptop_public)).unwrap();
        assert!(
            matches!(&r.result, Ok(AppReply::Devices(d)) if matches!(&**d, DeviceReply::Removed { device, .. } if device.name == "laptop")),
            "{r:?}"
        );
        assert_eq!(
            laptop.call(AppOp::Ping).err(),
            Some(SessionError::DeviceNotRegistered)
        );
        // Asked again (the API may not have heard of it): the same document, nothing changed.
        let again = phone.call(remove(laptop_public)).unwrap();
        assert!(
            matches!(&again.result, Ok(AppReply::Devices(d)) if matches!(&**d, DeviceReply::Removed { device, .. } if device.device_key == Some([7; 32]))),
            "{again:?}"
        );
        assert_eq!(
            phone.call(remove([42; 32])).unwrap().result,
            Err(DeviceError::NoSuchDevice.into())
        );
        for i in 2..MAX_DEVICES {
            phone.call(remove([i as u8; 32])).unwrap().result.unwrap();
        }
        let phone_public = vettid_crypto::noise::public_key(&phone_key);
        assert_eq!(
            phone.call(remove(phone_public)).unwrap().result,
            Err(DeviceError::LastDevice.into())
        );
    }

    /// A shredded vault leaves no object behind, its open sessions end at once, its devices
    /// are no longer registered, a second shred finds nothing (a lost answer can be retried),
    /// and the member can enroll again into a new vault.
    #[test]
    fn a_shredded_vault_is_gone_and_its_sessions_end() {
        let (m, store) = manager(fast(10));
        let sessions = Sessions::new(Arc::new(NoDocuments));
        let device = SecretBytes::random();
        enroll(&m, &sessions, &device);
        let mut phone = App::open(&sessions, &m, "alice", Channel::Session, &device).unwrap();
        assert!(matches!(
            phone.call(unlock()).unwrap().result,
            Ok(AppReply::Unlocked { .. })
        ));
        let before = store.lock().unwrap().len() as u64;
        assert_eq!(
            crate::server::shred(&m, &sessions, "alice"),
            Ok(before),
            "every object deleted"
        );
        assert!(store.lock().unwrap().is_empty());
        assert_eq!(
            phone.call(AppOp::Ping).err(),
            Some(SessionError::UnknownSession)
        );
        assert_eq!(
            App::open(&sessions, &m, "alice", Channel::Session, &device).err(),
            Some(SessionError::DeviceNotRegistered)
        );
        assert_eq!(crate::server::shred(&m, &sessions, "alice"), Ok(0));
        let laptop = SecretBytes::random();
        enroll(&m, &sessions, &laptop);
        let mut laptop = App::open(&sessions, &m, "alice", Channel::Session, &laptop).unwrap();
        assert!(matches!(
            laptop.call(unlock()).unwrap().result,
            Ok(AppReply::Unlocked { .. })
        ));
    }

    #[test]
    fn every_answer_about_the_vault_carries_the_version_it_was_taken_at() {
        let device = SecretBytes::random();
        let (m, sessions) = enrolled(&device);
        let mut app = App::open(&sessions, &m, "alice", Channel::Session, &device).unwrap();
        // Before the PIN: refused, and nothing about the vault's state is shown.
        let r = app.call(list()).unwrap();
        assert_eq!(
            (r.result, r.vault_version),
            (Err(VaultError::NotUnlocked), None)
        );
        let r = app.call(unlock()).unwrap();
        let Ok(AppReply::Unlocked { version, .. }) = r.result else {
            panic!("{r:?}")
        };
        assert_eq!(r.vault_version.as_ref(), Some(&version));
        let r = app.call(create("a")).unwrap();
        let Ok(AppReply::Secrets(changed)) = r.result else {
            panic!("{r:?}")
        };
        let SecretReply::Changed {
            version: written, ..
        } = *changed
        else {
            panic!()
        };
        assert!(written.version > version.version);
        assert_eq!(
            r.vault_version.as_ref(),
            Some(&written),
            "the write's own version"
        );
        // Reads show the version too (the app checks reads for rollback).
        let r = app.call(list()).unwrap();
        assert!(r.result.is_ok());
        assert_eq!(r.vault_version.as_ref(), Some(&written));
        // A refusal of the request shows the (unchanged) version too: what it says about the
        // vault's state is checked like an answer.
        let r = app
            .call(AppOp::Secrets(SecretOp::Get {
                id: [9; 16],
                version: None,
            }))
            .unwrap();
        assert_eq!(r.result, Err(VaultError::NotFound));
        assert_eq!(r.vault_version.as_ref(), Some(&written));
        // The session's own operations show none.
        let r = app.call(AppOp::Ping).unwrap();
        assert_eq!((r.result, r.vault_version), (Ok(AppReply::Pong), None));
    }

    #[test]
    fn another_sessions_unlock_opens_nothing_here_and_the_newest_unlock_wins() {
        let device = SecretBytes::random();
        let (m, sessions) = enrolled(&device);
        let mut a = App::open(&sessions, &m, "alice", Channel::Session, &device).unwrap();
        let mut b = App::open(&sessions, &m, "alice", Channel::Session, &device).unwrap();
        assert!(a.call(unlock()).unwrap().result.is_ok());
        assert_eq!(b.call(list()).unwrap().result, Err(VaultError::NotUnlocked));
        assert!(a.call(list()).unwrap().result.is_ok());
        assert!(b.call(unlock()).unwrap().result.is_ok());
        assert_eq!(a.call(list()).unwrap().result, Err(VaultError::NotUnlocked));
        assert!(b.call(list()).unwrap().result.is_ok());
        assert_eq!(b.call(AppOp::Lock).unwrap().result, Ok(AppReply::Locked));
        assert_eq!(b.call(list()).unwrap().result, Err(VaultError::NotUnlocked));
    }

    #[test]
    fn replayed_and_reordered_requests_are_refused_and_the_session_goes_on() {
        let device = SecretBytes::random();
        let (m, sessions) = enrolled(&device);
        let mut app = App::open(&sessions, &m, "alice", Channel::Session, &device).unwrap();
        assert!(app.call(unlock()).unwrap().result.is_ok());
        assert!(app.send_at(5, create("five")).is_ok());
        assert_eq!(app.send_at(5, create("again")), Err(SessionError::Replayed));
        assert_eq!(app.send_at(3, create("older")), Err(SessionError::Replayed));
        let r = app.send_at(6, list()).unwrap();
        let Ok(AppReply::Secrets(items)) = r.result else {
            panic!("{r:?}")
        };
        let SecretReply::Items { items, .. } = *items else {
            panic!()
        };
        let names: Vec<_> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            ["five"],
            "neither the replay nor the reordered one ran"
        );
    }

    #[test]
    fn a_removed_device_loses_its_open_session() {
        let device = SecretBytes::random();
        let (m, sessions) = enrolled(&device);
        let mut phone = App::open(&sessions, &m, "alice", Channel::Session, &device).unwrap();
        assert_eq!(phone.call(AppOp::Ping).unwrap().result, Ok(AppReply::Pong));
        // A day later (the enclave's clock), a new device recovers the vault.
        m.skip(24 * 3600 * 1000);
        let laptop = SecretBytes::random();
        let mut new = App::open(&sessions, &m, "alice", Channel::Enroll, &laptop).unwrap();
        let recover = |binding| AppOp::Recover {
            proof: RecoveryProof::Pin(Zeroizing::new(PIN.to_vec())),
            password_verifier: Zeroizing::new([1; 32]),
            device_name: "laptop".into(),
            device: binding,
        };
        let key = vettid_crypto::sign::SigningKey::generate();
        let for_other_key = vettid_proto::auth::DeviceBinding::sign("alice", &[7; 32], &key);
        assert_eq!(
            new.call(recover(for_other_key)).unwrap().result,
            Err(Invalid::DeviceBinding.into())
        );
        assert_eq!(
            phone.call(AppOp::Ping).unwrap().result,
            Ok(AppReply::Pong),
            "a refused recovery changed nothing"
        );
        let binding = vettid_proto::auth::DeviceBinding::sign(
            "alice",
            &vettid_crypto::noise::public_key(&laptop),
            &key,
        );
        let r = new.call(recover(binding)).unwrap();
        assert!(matches!(r.result, Ok(AppReply::Recovered(_))), "{r:?}");
        assert_eq!(
            phone.call(AppOp::Ping).err(),
            Some(SessionError::DeviceNotRegistered),
            "the old device's open session ends at once"
        );
        assert_eq!(
            App::open(&sessions, &m, "alice", Channel::Session, &device).err(),
            Some(SessionError::DeviceNotRegistered)
        );
        let mut laptop = App::open(&sessions, &m, "alice", Channel::Session, &laptop).unwrap();
        assert!(matches!(
            laptop.call(unlock()).unwrap().result,
            Ok(AppReply::Unlocked { .. })
        ));
    }

    #[test]
    fn enrollment_sessions_only_enroll_and_unregistered_devices_get_no_session() {
        let device = SecretBytes::random();
        let (m, sessions) = enrolled(&device);
        let mut enrolling = App::open(&sessions, &m, "alice", Channel::Enroll, &device).unwrap();
        assert_eq!(
            enrolling.call(unlock()).unwrap().result,
            Err(Invalid::WrongChannel.into())
        );
        assert_eq!(
            enrolling.call(list()).unwrap().result,
            Err(Invalid::WrongChannel.into())
        );
        let stranger = SecretBytes::random();
        assert_eq!(
            App::open(&sessions, &m, "alice", Channel::Session, &stranger).err(),
            Some(SessionError::DeviceNotRegistered)
        );
    }
}
