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

/// Fetches up to `max` pending events from the member's durable consumer, acknowledging
/// each; waits at most `wait` for the first. Undecodable events are skipped (and counted).
pub async fn fetch(
    client: &crate::vault::VaultClient,
    key: &SecretBytes<32>,
    max: usize,
    wait: std::time::Duration,
) -> Result<(Vec<Event>, usize), ClientError> {
    use futures::StreamExt;
    let nats = |e: &dyn std::fmt::Display| ClientError::Nats(format!("events: {e}"));
    let member = client.member();
    // The host made this durable consumer when the app first reached its vault.
    let consumer: async_nats::jetstream::consumer::PullConsumer = async_nats::jetstream::new(
        client
            .nats()
            .ok_or_else(|| nats(&"events travel only over NATS"))?
            .clone(),
    )
    .get_consumer_from_stream(member, vettid_nats::EVENTS_STREAM)
    .await
    .map_err(|e| nats(&e))?;
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| nats(&e))?;
    let (mut events, mut skipped) = (Vec::new(), 0);
    while let Some(msg) = batch.next().await {
        let msg = msg.map_err(|e| nats(&e))?;
        match open(member, key, &msg.payload) {
            Some(e) => events.push(e),
            None => skipped += 1,
        }
        msg.ack().await.map_err(|e| nats(&e))?;
    }
    Ok((events, skipped))
}
