//! The vault's events, from JetStream: what arrived while the app was offline comes first.

use crate::ClientError;
use vettid_crypto::SecretBytes;
use vettid_crypto::aead::AeadKey;
use vettid_proto::session::{Event, SealedEvent, event_aad};

/// Opens a sealed event with the vault's event key; `None` if it does not authenticate.
pub fn open(member: &str, key: &SecretBytes<32>, body: &[u8]) -> Option<Event> {
    let sealed: SealedEvent = vettid_proto::session::decode_exact(body)?;
    let plain = AeadKey::from(key.clone())
        .open(&event_aad(member, &sealed.id), &sealed.ciphertext)
        .ok()?;
    vettid_proto::session::open_plaintext(&plain)
}

/// Fetches up to `max` pending events, waiting at most `wait` for the first: the host takes
/// them from the member's durable consumer and acknowledges them (the app has no JetStream
/// rights of its own). Events that do not open under the event key are skipped and counted.
pub async fn fetch(
    client: &crate::vault::VaultClient,
    key: &SecretBytes<32>,
    max: usize,
    wait: std::time::Duration,
) -> Result<(Vec<Event>, usize), ClientError> {
    use vettid_proto::session::{
        EVENTS_CHANNEL, FetchEvents, FetchedEvents, MAX_FETCH, MAX_FETCH_WAIT_MS,
    };
    let nats = |e: &dyn std::fmt::Display| ClientError::Nats(format!("events: {e}"));
    let member = client.member();
    let request = FetchEvents {
        max: u16::try_from(max).unwrap_or(MAX_FETCH).min(MAX_FETCH),
        wait_ms: u32::try_from(wait.as_millis())
            .unwrap_or(MAX_FETCH_WAIT_MS)
            .min(MAX_FETCH_WAIT_MS),
    };
    let subject = format!("OwnerSpace.{member}.forVault.{EVENTS_CHANNEL}");
    let answer = client
        .nats()
        .ok_or_else(|| nats(&"events travel only over NATS"))?
        .request(
            subject,
            postcard::to_allocvec(&request)
                .expect("a fetch encodes")
                .into(),
        )
        .await
        .map_err(|e| nats(&e))?;
    let fetched = match vettid_proto::session::decode_exact(&answer.payload) {
        Some(FetchedEvents::Events(bodies)) => bodies,
        Some(FetchedEvents::Unavailable) => return Err(nats(&"the host could not fetch them")),
        _ => return Err(ClientError::Protocol("undecodable events answer".into())),
    };
    let (mut events, mut skipped) = (Vec::new(), 0);
    for body in fetched {
        match open(member, key, &body) {
            Some(e) => events.push(e),
            None => skipped += 1,
        }
    }
    Ok((events, skipped))
}

impl<S: crate::vault::Seen> crate::vault::Unlocked<S> {
    /// Waits up to `timeout` for an event of this vault that `pred` accepts (long-polled
    /// through the host; the events seen on the way are consumed); whether one came.
    pub async fn wait_for_event(
        &self,
        timeout: std::time::Duration,
        pred: impl Fn(&vettid_proto::session::EventKind) -> bool,
    ) -> Result<bool, ClientError> {
        let key = SecretBytes::from_array(**self.event_key());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let wait = left.min(std::time::Duration::from_secs(5));
            let (events, _) = fetch(self.client(), &key, 256, wait).await?;
            if events.iter().any(|e| pred(&e.kind)) {
                return Ok(true);
            }
        }
    }
}
