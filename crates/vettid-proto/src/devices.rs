//! The member's devices as the vault knows them (inside the session; the vault must have been
//! unlocked in it): each registered session key, the device key beside it, and its name.

use serde::{Deserialize, Serialize};

/// Longest device name (bytes).
pub const MAX_NAME: usize = 64;

/// Whether `name` is an acceptable device name: 1–[`MAX_NAME`] bytes, no control characters
/// (it is printed in the member's lists and terminals).
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len()) && !name.chars().any(char::is_control)
}

/// Device operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

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
}
