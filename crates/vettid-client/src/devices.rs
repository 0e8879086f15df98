//! The member's devices, from the app: on an [`Unlocked`] session (every answer's vault
//! version is checked there).

use crate::ClientError;
use crate::vault::{Seen, Unlocked};
use vettid_proto::devices::{Device, DeviceOp, DeviceReply};

fn unexpected() -> ClientError {
    ClientError::Protocol("unexpected answer to a device operation".into())
}

impl<S: Seen> Unlocked<S> {
    /// The devices registered with the vault.
    pub async fn devices(&mut self) -> Result<Vec<Device>, ClientError> {
        match self.run(DeviceOp::List).await? {
            DeviceReply::Devices(all) => Ok(all),
            _ => Err(unexpected()),
        }
    }

    /// Renames the device with session key `device`.
    pub async fn rename_device(
        &mut self,
        device: [u8; 32],
        name: &str,
    ) -> Result<Device, ClientError> {
        match self
            .run(DeviceOp::Rename {
                device,
                name: name.to_owned(),
            })
            .await?
        {
            DeviceReply::Renamed(d) => Ok(d),
            _ => Err(unexpected()),
        }
    }
}
