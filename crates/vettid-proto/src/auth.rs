//! Messages the app signs for the API with its enrolled device key.

/// What the device key signs to renew its NATS credentials:
/// `"vettid/v1/nats-refresh\0" ‖ member ‖ 0 ‖ nats public key ‖ 0 ‖ timestamp (u64 BE)`.
pub fn nats_refresh_message(member: &str, nats_public_key: &str, timestamp: u64) -> Vec<u8> {
    [
        b"vettid/v1/nats-refresh\0".as_slice(),
        member.as_bytes(),
        &[0],
        nats_public_key.as_bytes(),
        &[0],
        &timestamp.to_be_bytes(),
    ]
    .concat()
}
