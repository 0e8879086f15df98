//! The member's devices (`vettid_proto::devices`): names and device keys kept in the engine's
//! `meta` table (`device/<session key>`, `device-key/<session key>`) since enrollment; the
//! keys record holds which session keys may open a session. A rename is recorded in the audit
//! chain in the same write.

use crate::manager::UnlockedVault;
use crate::vault::{SqlValue, Statement, Vault};
use vettid_proto::devices::{Device, DeviceError, DeviceOp, DeviceReply, valid_name};
use vettid_proto::enclave::VaultError;
use vettid_proto::feed::{Audience, Retention};

/// This domain keeps its rows in `meta`: no tables of its own.
pub const MIGRATIONS: &[crate::vault::Migration] = &[];

fn db(e: rusqlite::Error) -> VaultError {
    VaultError::Internal(format!("database: {e}"))
}

/// The registered devices, each with the `meta` key its name is stored under.
fn devices(vault: &Vault) -> Result<Vec<(String, Device)>, VaultError> {
    let rows: Vec<(String, Vec<u8>)> = vault
        .read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT key, value FROM meta WHERE key >= 'device/' AND key < 'device0' ORDER BY key",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db)?;
    let tampered = || VaultError::Tampered("device record".into());
    rows.into_iter()
        .map(|(key, name)| {
            let hex_key = key.strip_prefix("device/").ok_or_else(tampered)?;
            let mut session_key = [0u8; 32];
            hex::decode_to_slice(hex_key, &mut session_key).map_err(|_| tampered())?;
            let device_key = vault
                .meta(&format!("device-key/{hex_key}"))?
                .map(|k| <[u8; 32]>::try_from(k.as_slice()).map_err(|_| tampered()))
                .transpose()?;
            let name = String::from_utf8(name).map_err(|_| tampered())?;
            Ok((
                key,
                Device {
                    session_key,
                    device_key,
                    name,
                },
            ))
        })
        .collect()
}

/// Runs one device operation on an unlocked vault.
pub fn handle(unlocked: &mut UnlockedVault<'_>, op: DeviceOp) -> Result<DeviceReply, VaultError> {
    let (vault, objects, now_ms) = unlocked.parts();
    match op {
        DeviceOp::List => devices(vault)
            .map(|all| DeviceReply::Devices(all.into_iter().map(|(_, d)| d).collect())),
        DeviceOp::Rename { device, name } => {
            if !valid_name(&name) {
                return Err(DeviceError::Name.into());
            }
            let (key, mut found) = devices(vault)?
                .into_iter()
                .find(|(_, d)| vettid_crypto::ct_eq(&d.session_key, &device))
                .ok_or(DeviceError::NoSuchDevice)?;
            let event = crate::feed::event(
                now_ms,
                Audience::Audit,
                "devices.renamed",
                Retention::Standard,
                format!("device {} renamed", hex::encode(&device[..8])),
            );
            let mut statements = vec![Statement {
                sql: "UPDATE meta SET value = ?1 WHERE key = ?2".into(),
                params: vec![
                    SqlValue::Blob(name.as_bytes().to_vec()),
                    SqlValue::Text(key),
                ],
            }];
            statements.extend(crate::feed::append(vault, &[event])?);
            vault.write(objects, statements)?;
            found.name = name;
            Ok(DeviceReply::Renamed(found))
        }
        // They re-key the vault, which only the manager does (`Manager::change_devices`,
        // reached from the session).
        DeviceOp::Add { .. } | DeviceOp::Remove { .. } => Err(VaultError::Invalid(
            vettid_proto::enclave::Invalid::Malformed,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Opened;

    #[test]
    fn devices_are_listed_and_renamed_and_bad_renames_change_nothing() {
        let v = Opened::new();
        let list = |v: &Opened| match v.run(0, |u| handle(u, DeviceOp::List)).unwrap() {
            DeviceReply::Devices(d) => d,
            other => panic!("{other:?}"),
        };
        let all = list(&v);
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].session_key, all[0].device_key, all[0].name.as_str()),
            ([1; 32], Some([9; 32]), "phone")
        );
        let rename = |device: [u8; 32], name: &str| {
            v.run(0, |u| {
                handle(
                    u,
                    DeviceOp::Rename {
                        device,
                        name: name.into(),
                    },
                )
            })
        };
        assert_eq!(rename([1; 32], ""), Err(DeviceError::Name.into()));
        assert_eq!(
            rename([1; 32], &"x".repeat(vettid_proto::devices::MAX_NAME + 1)),
            Err(DeviceError::Name.into())
        );
        assert_eq!(
            rename([1; 32], "evil\u{1b}[2J"),
            Err(DeviceError::Name.into())
        );
        assert_eq!(
            rename([2; 32], "laptop"),
            Err(DeviceError::NoSuchDevice.into())
        );
        assert_eq!(list(&v), all, "refusals changed nothing");
        let DeviceReply::Renamed(d) = rename([1; 32], "old phone").unwrap() else {
            panic!()
        };
        assert_eq!(d.name, "old phone");
        assert_eq!(list(&v)[0].name, "old phone");
    }
}
