//! The member's devices as the vault knows them (inside the session; the vault must have been
//! unlocked in it): each registered session key, the device key beside it, and its name.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Longest device name (bytes).
pub const MAX_NAME: usize = 64;

/// Devices a vault registers at most.
pub const MAX_DEVICES: usize = 8;

/// Whether `name` is an acceptable device name: 1–[`MAX_NAME`] bytes, no control characters
/// (it is printed in the member's lists and terminals).
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// Device operations.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceOp {
    /// The registered devices.
    List,
    /// Gives a device another name.
    Rename {
        /// Its session (Noise static) key.
        device: [u8; 32],
        /// The new name (1–[`MAX_NAME`] bytes).
        name: String,
    },
    /// Registers another device of the member's (the one whose join this device approved):
    /// proven with the PIN, counted like an unlock; a new keys generation lists it. Answered
    /// with [`DeviceReply::Added`] and the enclave's document for the API
    /// ([`crate::auth::added_device_binding`]).
    Add {
        /// The member's PIN.
        pin: Zeroizing<Vec<u8>>,
        /// The new device's session (Noise static) key.
        session_key: [u8; 32],
        /// The new device's Ed25519 device key.
        device_key: [u8; 32],
        /// Its name (1–[`MAX_NAME`] bytes).
        name: String,
    },
    /// Removes a registered device (any but the last; this one too): proven with the PIN; its
    /// sessions end at their next request. Answered with [`DeviceReply::Removed`] and the
    /// enclave's document for the API to revoke its credentials
    /// ([`crate::auth::removed_device_binding`]).
    Remove {
        /// The member's PIN.
        pin: Zeroizing<Vec<u8>>,
        /// The device's session key.
        device: [u8; 32],
    },
}

crate::redact::redacted_debug!(DeviceOp);

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its session (Noise static) key: what the vault admits sessions of.
    pub session_key: [u8; 32],
    /// Its Ed25519 device key (renewals with the API), when the vault has it.
    pub device_key: Option<[u8; 32]>,
    /// Its name, for the member's own lists.
    pub name: String,
}

/// Answers to [`DeviceOp`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceReply {
    /// The devices, by session key.
    Devices(Vec<Device>),
    /// Renamed: the device as it is now.
    Renamed(Device),
    /// Registered.
    Added {
        /// The device as registered.
        device: Device,
        /// The enclave's document (`user_data` = [`crate::auth::added_device_binding`]).
        #[serde(with = "serde_bytes")]
        device_attestation: Vec<u8>,
    },
    /// Removed.
    Removed {
        /// The device as it was registered.
        device: Device,
        /// The enclave's document (`user_data` = [`crate::auth::removed_device_binding`]).
        #[serde(with = "serde_bytes")]
        device_attestation: Vec<u8>,
    },
}

/// Why a device operation was refused (nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DeviceError {
    /// No registered device has that key.
    #[error("no such device")]
    NoSuchDevice,
    /// A name is 1–[`MAX_NAME`] bytes without control characters.
    #[error("a device name is 1-{MAX_NAME} bytes, without control characters")]
    Name,
    /// That device is registered already.
    #[error("that device is registered already")]
    AlreadyRegistered,
    /// The vault has [`MAX_DEVICES`] devices.
    #[error("the vault has {MAX_DEVICES} devices already; remove one first")]
    TooMany,
    /// The last device cannot be removed (delete the vault instead).
    #[error("the last device cannot be removed")]
    LastDevice,
    /// The vault does not know that device's device key (it was registered before they were
    /// kept), so no document can name it.
    #[error("the vault does not know that device's device key")]
    NoDeviceKey,
}
