//! NATS routing: `OwnerSpace.<member>.forVault.<channel>` → enclave → reply inbox, the
//! enclave's events → JetStream `OwnerSpace.<member>.forApp.<token>`, and vault-to-vault
//! messages → JetStream `MessageSpace.<peer>.forOwner.sealed` → the peer vault's enclave.
//!
//! The host reads only the subject (member and channel) and passes bodies through unread:
//! they are Noise messages for the enclave, or sealed for a peer vault. Events and peer
//! messages are made durable in JetStream *before* the reply goes out, so an app that saw its
//! reply can always find the events it caused, and a message it sent is on its way.
//!
//! Peer messages wait in JetStream (a durable per recipient, [`vettid_nats::peer_consumer_config`])
//! until the recipient's vault is open: when an answer to one of its apps says so, the host
//! takes them to the enclave in batches, in order, acknowledging each once the vault dealt
//! with it (the vault makes a batch durable together); those the vault cannot take yet
//! (locked meanwhile) go back for later.

use crate::host::Host;
use async_nats::jetstream;
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vettid_nats::{EVENTS_STREAM, PEERS_STREAM};
use vettid_proto::channel::to_body;
use vettid_proto::enclave::{
    Destination, EnclaveReply, MAX_PEER_BATCH_BYTES, Outbound, PeerRest, ToEnclave, VaultError,
};
use vettid_proto::session::{
    Channel, EVENTS_CHANNEL, FetchEvents, FetchedEvents, MAX_FETCH, MAX_FETCH_WAIT_MS,
    SessionError, ToApp,
};

/// The queue group of hosts serving `forVault` subjects.
pub const QUEUE_GROUP: &str = "vettid-host";
/// App messages being handled at once, across members; beyond, each is answered "busy".
const MAX_IN_FLIGHT: usize = 2048;
/// App messages being handled at once for one member: one member cannot take the host's
/// capacity (or the enclave's workers) from the others.
const MEMBER_IN_FLIGHT: usize = 8;
/// How long events are kept for apps that are offline.
const EVENT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Events kept per member subject at most (the oldest go first): no member's events can
/// crowd out the others' in the shared stream.
const EVENTS_PER_MEMBER: i64 = 10_000;
/// How long vault-to-vault messages wait for a locked vault.
const PEER_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Peer messages kept per recipient at most (the newest are refused beyond: a sender learns
/// its message was not taken, rather than the recipient losing old ones).
const PEERS_PER_MEMBER: i64 = 20_000;
/// Peer messages taken from JetStream at once.
const PEER_BATCH: usize = vettid_proto::enclave::MAX_PEER_BATCH;
/// How long one fetch of peer messages waits for the first.
const PEER_WAIT: Duration = Duration::from_secs(5);
/// How long a peer message that could not be dealt with waits before it comes again.
const RETRY: Duration = Duration::from_secs(2);

/// Connects to NATS with the host's creds, makes sure the events stream exists, and serves
/// `OwnerSpace.*.forVault.*` until the connection closes.
pub async fn connect(url: &str, creds: &Path) -> Result<Router, async_nats::Error> {
    let client = async_nats::ConnectOptions::with_credentials_file(creds)
        .await?
        .name("vettid-host")
        .connect(url)
        .await?;
    let js = jetstream::new(client.clone());
    let config = jetstream::stream::Config {
        name: EVENTS_STREAM.into(),
        subjects: vec!["OwnerSpace.*.forApp.>".into()],
        max_age: EVENT_RETENTION,
        max_bytes: 1 << 30,
        max_messages_per_subject: EVENTS_PER_MEMBER,
        discard: jetstream::stream::DiscardPolicy::Old,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    js.get_or_create_stream(config.clone()).await?;
    // A stream made by an older host gets the per-member limit too.
    js.update_stream(config).await?;
    let peers = jetstream::stream::Config {
        name: PEERS_STREAM.into(),
        subjects: vec!["MessageSpace.*.forOwner.>".into()],
        max_age: PEER_RETENTION,
        max_bytes: 4 << 30,
        max_messages_per_subject: PEERS_PER_MEMBER,
        discard: jetstream::stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        // The largest wire message (its biggest size bucket) and its headers: nothing larger
        // is ever a vault's, and none can hold up a recipient's batches.
        max_message_size: (vettid_proto::peer::BUCKETS[vettid_proto::peer::BUCKETS.len() - 1]
            + 4096) as i32,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    js.get_or_create_stream(peers).await?;
    Ok(Router {
        draining: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
        next_drain: std::sync::atomic::AtomicU64::new(1),
        turns: std::sync::Mutex::new(std::collections::HashMap::new()),
        client,
        js,
        consumers: std::sync::Mutex::new(std::collections::HashSet::new()),
        in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        per_member: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
    })
}

/// One member's claim on the router while a message of theirs is handled.
struct MemberSlot {
    member: String,
    counts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl Drop for MemberSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.member) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.member);
            }
        }
    }
}

/// A connected router.
pub struct Router {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Members whose events consumer is known to exist.
    consumers: std::sync::Mutex<std::collections::HashSet<String>>,
    in_flight: Arc<tokio::sync::Semaphore>,
    per_member: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Members whose peer messages a task is taking to the enclave, with how often it was
    /// woken (an answer said the vault is open) since it started.
    draining: Arc<std::sync::Mutex<std::collections::HashMap<String, Drain>>>,
    next_drain: std::sync::atomic::AtomicU64,
    /// Per member: held by the task taking its messages to the enclave.
    turns: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The task taking one member's peer messages to the enclave.
struct Drain {
    /// Which task (a newer one replaces it).
    task: u64,
    /// How often an answer said the vault is open since the task started.
    wakes: u64,
}

impl Router {
    /// Serves requests until the subscription ends. Each request runs in its own task.
    pub async fn serve(self, host: Arc<Host>) -> Result<(), async_nats::Error> {
        let mut requests = self
            .client
            .queue_subscribe("OwnerSpace.*.forVault.*", QUEUE_GROUP.into())
            .await?;
        // Every host, not one of the queue group: each enclave that holds the vault forgets
        // it (the API takes the first answer).
        let shreds = self.client.subscribe(vettid_nats::SHRED_SUBJECT).await?;
        self.client.flush().await?;
        tracing::info!("routing OwnerSpace.*.forVault.* to the enclave");
        let this = Arc::new(self);
        tokio::spawn(this.clone().serve_shreds(host.clone(), shreds));
        while let Some(msg) = requests.next().await {
            let member = msg.subject.split('.').nth(1).unwrap_or_default().to_owned();
            let Some((permit, slot)) = this.claim(&member) else {
                this.busy(&member, msg).await;
                continue;
            };
            let (this, host) = (this.clone(), host.clone());
            tokio::spawn(async move {
                this.route(&host, msg).await;
                drop((permit, slot));
            });
        }
        Ok(())
    }

    /// Answers the API's shred requests ([`vettid_nats::SHRED_SUBJECT`]: only the platform's
    /// `api` user may publish there), one at a time: the enclave destroys the vault, then the
    /// member's events and events consumer go from JetStream.
    async fn serve_shreds(self: Arc<Self>, host: Arc<Host>, mut requests: async_nats::Subscriber) {
        while let Some(msg) = requests.next().await {
            let Some(reply_to) = msg.reply.clone() else {
                continue;
            };
            let answer = match std::str::from_utf8(&msg.payload) {
                Ok(member) if vettid_proto::enclave::valid_vault_id(member) => {
                    let shredded = host
                        .call(&ToEnclave::Shred {
                            vault: member.into(),
                        })
                        .await
                        .unwrap_or_else(|e| Err(VaultError::Internal(e.to_string())));
                    if shredded.is_ok() {
                        self.forget_events(member).await;
                    }
                    tracing::info!(member, ok = shredded.is_ok(), "vault shredded on request");
                    shredded
                }
                _ => Err(VaultError::Invalid(vettid_proto::enclave::Invalid::VaultId)),
            };
            if let Err(e) = self.client.publish(reply_to, to_body(&answer).into()).await {
                tracing::warn!(error = %e, "shred answer not sent");
            }
        }
    }

    /// Purges a shredded member's events and deletes their events consumer.
    async fn forget_events(&self, member: &str) {
        self.consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(member);
        let Ok(stream) = self.js.get_stream(EVENTS_STREAM).await else {
            tracing::warn!(member, "events stream not reachable: events not purged");
            return;
        };
        if let Err(e) = stream
            .purge()
            .filter(format!("OwnerSpace.{member}.forApp.>"))
            .await
        {
            tracing::warn!(member, error = %e, "events not purged");
        }
        if let Ok(config) = vettid_nats::member_consumer_config(member)
            && let Some(name) = config.durable_name
        {
            let _ = stream.delete_consumer(&name).await;
        }
        // And the messages other vaults sent it, which nobody can open any more.
        self.sleep(member);
        if let Ok(peers) = self.js.get_stream(PEERS_STREAM).await {
            let _ = peers
                .purge()
                .filter(format!("MessageSpace.{member}.forOwner.>"))
                .await;
            if let Ok(config) = vettid_nats::peer_consumer_config(member)
                && let Some(name) = config.durable_name
            {
                let _ = peers.delete_consumer(&name).await;
            }
        }
    }

    /// A place for one more message of `member`'s, if the global and the member's bounds allow.
    fn claim(&self, member: &str) -> Option<(tokio::sync::OwnedSemaphorePermit, MemberSlot)> {
        let permit = self.in_flight.clone().try_acquire_owned().ok()?;
        let mut counts = self.per_member.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(member.to_owned()).or_insert(0);
        if *n >= MEMBER_IN_FLIGHT {
            return None;
        }
        *n += 1;
        Some((
            permit,
            MemberSlot {
                member: member.to_owned(),
                counts: self.per_member.clone(),
            },
        ))
    }

    /// Answers "busy" at once (into the member's own inbox only), without doing the work.
    async fn busy(&self, member: &str, msg: async_nats::Message) {
        let Some(reply_to) = msg.reply else { return };
        if !vettid_nats::is_member_reply_subject(member, &reply_to) {
            return;
        }
        let events = msg.subject.ends_with(&format!(".{EVENTS_CHANNEL}"));
        let answer = if events {
            to_body(&FetchedEvents::Unavailable)
        } else {
            to_body(&ToApp::Refused(SessionError::Busy))
        };
        let _ = self.client.publish(reply_to, answer.into()).await;
    }

    async fn route(self: &Arc<Self>, host: &Arc<Host>, msg: async_nats::Message) {
        // Without a reply subject there is nobody to answer.
        let Some(reply_to) = msg.reply.clone() else {
            return;
        };
        let mut tokens = msg.subject.split('.');
        let (Some(_), Some(member), Some(_), Some(channel)) =
            (tokens.next(), tokens.next(), tokens.next(), tokens.next())
        else {
            return;
        };
        // The broker lets a member name any reply subject; answer only into the member's own
        // inbox, so nobody can aim the vault's answers at another member.
        if !vettid_nats::is_member_reply_subject(member, &reply_to) {
            return;
        }
        if !vettid_proto::enclave::valid_vault_id(member) {
            return;
        }
        let answer = match Channel::parse(channel) {
            None if channel == EVENTS_CHANNEL => {
                self.ensure_consumer(member).await;
                to_body(&self.fetch_events(member, &msg.payload).await)
            }
            None => to_body(&ToApp::Refused(SessionError::WrongChannel)),
            Some(channel) => {
                if channel != Channel::Attestation {
                    self.ensure_consumer(member).await;
                }
                self.forward(host, member, channel, msg.payload.to_vec())
                    .await
            }
        };
        if let Err(e) = self.client.publish(reply_to, answer.into()).await {
            tracing::warn!(error = %e, "reply not sent");
        }
    }

    /// Makes sure the member's durable events consumer exists. The host creates it, not the
    /// app: members may not create consumers at all (a member-created consumer could be turned
    /// into a push consumer delivering anywhere; nats-server issue 8274).
    async fn ensure_consumer(&self, member: &str) {
        if self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(member)
        {
            return;
        }
        let Ok(config) = vettid_nats::member_consumer_config(member) else {
            return;
        };
        match self
            .js
            .create_consumer_on_stream(config, EVENTS_STREAM)
            .await
        {
            Ok(_) => {
                self.consumers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(member.to_owned());
            }
            Err(e) => tracing::warn!(member, error = %e, "events consumer not created"),
        }
    }

    /// Fetches (and acknowledges) up to the requested number of the member's pending events
    /// from its durable, for the app that asked on `forVault.events`: apps have no JetStream
    /// rights of their own (its API answers to any reply subject a requester names).
    async fn fetch_events(&self, member: &str, request: &[u8]) -> FetchedEvents {
        let Some(FetchEvents { max, wait_ms }) =
            vettid_proto::session::decode_exact::<FetchEvents>(request)
        else {
            return FetchedEvents::Malformed;
        };
        let max = usize::from(max.clamp(1, MAX_FETCH));
        let wait = Duration::from_millis(u64::from(wait_ms.clamp(1, MAX_FETCH_WAIT_MS)));
        let fetched = async {
            let consumer: jetstream::consumer::PullConsumer = self
                .js
                .get_consumer_from_stream(member, EVENTS_STREAM)
                .await?;
            let mut batch = consumer
                .fetch()
                .max_messages(max)
                .expires(wait)
                .messages()
                .await?;
            let mut events = Vec::new();
            while let Some(msg) = batch.next().await {
                let msg = msg?;
                msg.ack().await?;
                events.push(msg.payload.to_vec());
            }
            Ok::<_, async_nats::Error>(events)
        };
        match fetched.await {
            Ok(events) => FetchedEvents::Events(events),
            Err(e) => {
                tracing::warn!(member, error = %e, "events not fetched");
                FetchedEvents::Unavailable
            }
        }
    }

    /// Passes one app message to the enclave; publishes its events and peer messages; returns
    /// the answer (and, when the vault is open, takes its waiting peer messages to it).
    async fn forward(
        self: &Arc<Self>,
        host: &Arc<Host>,
        member: &str,
        channel: Channel,
        body: Vec<u8>,
    ) -> Vec<u8> {
        let request = ToEnclave::App {
            member: member.to_owned(),
            channel,
            now_ms: now_ms(),
            body,
        };
        let unavailable = to_body(&ToApp::Refused(SessionError::Unavailable));
        match host.call(&request).await {
            Ok(Ok(EnclaveReply::App { body, events, open })) => {
                if !self.publish(member, events).await {
                    // The operation happened; something it sent could not be kept. Say so in
                    // the log (it holds no content: all is sealed) and answer anyway: a retry
                    // of the operation sends it again.
                    tracing::warn!(member, "event or peer message not stored in JetStream");
                }
                if open {
                    self.wake(host, member);
                } else {
                    self.sleep(member);
                }
                body
            }
            Ok(Ok(_)) | Ok(Err(_)) => {
                tracing::warn!(member, "unexpected enclave answer to an app message");
                unavailable
            }
            Err(e) => {
                tracing::warn!(member, error = %e, "enclave unavailable");
                unavailable
            }
        }
    }

    /// Publishes what the enclave sent for `member` into JetStream, in order, then waits for
    /// every acknowledgement (the publishes go out together); whether all were stored.
    async fn publish(&self, member: &str, out: Vec<Outbound>) -> bool {
        let mut all = true;
        let mut acks = Vec::with_capacity(out.len());
        for o in out {
            let subject = match &o.to {
                Destination::App { token } => format!("OwnerSpace.{member}.forApp.{token}"),
                Destination::Peer { member: to } if vettid_proto::enclave::valid_vault_id(to) => {
                    vettid_proto::peer::peer_subject(to)
                }
                Destination::Peer { .. } => {
                    all = false;
                    continue;
                }
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", o.id.as_str());
            match self
                .js
                .publish_with_headers(subject, headers, o.body.into())
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(_) => all = false,
            }
        }
        for ack in acks {
            all &= ack.await.is_ok();
        }
        all
    }

    /// `member`'s vault is open: make sure a task takes its waiting peer messages to it.
    fn wake(self: &Arc<Self>, host: &Arc<Host>, member: &str) {
        let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = draining.get_mut(member) {
            d.wakes += 1;
            return;
        }
        let task = self
            .next_drain
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        draining.insert(member.to_owned(), Drain { task, wakes: 0 });
        let (this, host, member) = (self.clone(), host.clone(), member.to_owned());
        tokio::spawn(async move { this.drain(&host, &member, task).await });
    }

    /// `member`'s vault is closed (an answer said so): its task stops after its fetch.
    fn sleep(&self, member: &str) {
        self.draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(member);
    }

    /// Takes `member`'s peer messages from JetStream to the enclave, in order, while the vault
    /// is open: until it cannot take one (locked) and no wake-up came meanwhile, or an answer
    /// to its app said it closed.
    async fn drain(&self, host: &Host, member: &str, task: u64) {
        // One task takes a member's messages at a time (a newer one waits for an older one
        // still finishing its fetch), so they reach the vault in order.
        let turn = self
            .turns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(member.to_owned())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        let mut seen = 0;
        let mut consumer = None;
        loop {
            let ours = |d: Option<&Drain>| d.is_some_and(|d| d.task == task);
            if !ours(
                self.draining
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(member),
            ) {
                return;
            }
            let stop = match self.drain_once(host, member, &mut consumer).await {
                Ok(open) => !open,
                Err(e) => {
                    tracing::warn!(member, error = %e, "peer messages not fetched");
                    consumer = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    false
                }
            };
            if stop {
                let mut draining = self.draining.lock().unwrap_or_else(|p| p.into_inner());
                match draining.get(member) {
                    Some(d) if d.task == task && d.wakes != seen => seen = d.wakes,
                    Some(d) if d.task == task => {
                        draining.remove(member);
                        return;
                    }
                    _ => return,
                }
            }
        }
    }

    /// One fetch of `member`'s peer messages, taken to the enclave as one batch (durable there
    /// together); whether the vault is still open.
    async fn drain_once(
        &self,
        host: &Host,
        member: &str,
        consumer: &mut Option<jetstream::consumer::PullConsumer>,
    ) -> Result<bool, async_nats::Error> {
        if consumer.is_none() {
            let config = vettid_nats::peer_consumer_config(member)?;
            *consumer = Some(
                self.js
                    .create_consumer_on_stream(config, PEERS_STREAM)
                    .await?,
            );
        }
        let Some(consumer) = consumer.as_ref() else {
            return Ok(true);
        };
        // Waits for the first (up to PEER_WAIT), then takes what is there.
        let mut fetched = consumer
            .fetch()
            .max_messages(PEER_BATCH)
            .expires(PEER_WAIT)
            .messages()
            .await?;
        let mut batch = Vec::new();
        while let Some(msg) = fetched.next().await {
            match msg {
                Ok(m) => batch.push(m),
                // The fetch ended badly after some arrived: those are taken now (left
                // unacknowledged they would come back only after the ack wait, behind the
                // ones after them).
                Err(_) if !batch.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        // In turn, as batches that each fit one enclave request.
        let mut left = batch.into_iter().peekable();
        while left.peek().is_some() {
            let mut bytes = 0;
            let mut part = Vec::new();
            while let Some(m) =
                left.next_if(|m| part.is_empty() || bytes + m.payload.len() <= MAX_PEER_BATCH_BYTES)
            {
                bytes += m.payload.len();
                part.push(m);
            }
            match self.take_to_enclave(host, member, part).await? {
                None => {}
                Some(rest) => {
                    // Those after go back too, in order.
                    give_back(left, rest).await;
                    return match rest {
                        // The vault closed: they wait for when it opens again.
                        PeerRest::Later => Ok(false),
                        PeerRest::Retry => Err("the enclave did not take peer messages".into()),
                    };
                }
            }
        }
        Ok(true)
    }

    /// Takes `batch` to the enclave as one [`ToEnclave::Peers`] (durable there together),
    /// publishes what it sends, acknowledges the messages it dealt with and gives the others
    /// back; what became of those (`None`: there were none).
    async fn take_to_enclave(
        &self,
        host: &Host,
        member: &str,
        batch: Vec<jetstream::Message>,
    ) -> Result<Option<PeerRest>, async_nats::Error> {
        let request = ToEnclave::Peers {
            member: member.to_owned(),
            now_ms: now_ms(),
            bodies: batch
                .iter()
                .map(|m| serde_bytes::ByteBuf::from(m.payload.to_vec()))
                .collect(),
        };
        let (done, rest) = match host.call(&request).await {
            Ok(Ok(EnclaveReply::Peers { done, rest, out })) => {
                let done = (done as usize).min(batch.len());
                if self.publish(member, out).await {
                    (done, rest)
                } else {
                    // What they send back is not stored (JetStream full or away): they come
                    // again later, and the vault, which keeps each once, answers a text's
                    // redelivery with its receipt again.
                    (0, Some(PeerRest::Retry))
                }
            }
            other => {
                // The enclave or its storage failed: the batch comes again after a pause
                // (the task goes on while the vault is open).
                tracing::warn!(
                    member,
                    ok = other.is_ok(),
                    "enclave did not take peer messages"
                );
                (0, Some(PeerRest::Retry))
            }
        };
        let mut left = batch.into_iter();
        for msg in left.by_ref().take(done) {
            msg.ack().await?;
        }
        if left.len() == 0 {
            return Ok(None);
        }
        // Not all taken yet the enclave named no reason: as a failure, after a pause.
        let rest = rest.unwrap_or(PeerRest::Retry);
        give_back(left, rest).await;
        Ok(Some(rest))
    }
}

/// Gives peer messages back to JetStream, in order, as `rest` says: at once for when the vault
/// opens again, or after a pause.
async fn give_back(msgs: impl IntoIterator<Item = jetstream::Message>, rest: PeerRest) {
    let kind = match rest {
        PeerRest::Later => jetstream::AckKind::Nak(None),
        PeerRest::Retry => jetstream::AckKind::Nak(Some(RETRY)),
    };
    for msg in msgs {
        let _ = msg.ack_with(kind).await;
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
