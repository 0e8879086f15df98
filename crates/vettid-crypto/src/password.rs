//! Argon2id stretching of PINs and passwords (RFC 9106), with its parameters carried beside
//! the salt as a PHC string: `$argon2id$v=19$m=65536,t=3,p=1$<salt, unpadded base64>`.
//!
//! A stored PHC string may come back from untrusted storage, so [`Stretch::from_phc`] refuses
//! anything outside [`Bounds`]: an attacker-supplied blob can neither stall the process with
//! gigabytes of memory or thousands of passes, nor weaken the stretch below the floor.

use crate::SecretBytes;
use argon2::{Algorithm, Argon2, Params, Version};
use core::fmt;

/// Cost parameters of Argon2id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Memory in KiB (`m`).
    pub memory_kib: u32,
    /// Passes over memory (`t`).
    pub passes: u32,
    /// Lanes (`p`).
    pub lanes: u32,
}

impl Cost {
    /// DESIGN.md §4: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: Cost = Cost {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 1,
    };
}

impl Default for Cost {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The range of accepted costs. Anything outside is refused before any work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Smallest accepted cost (each field separately).
    pub min: Cost,
    /// Largest accepted cost (each field separately).
    pub max: Cost,
}

impl Bounds {
    /// Floor of 19 MiB / 2 passes (OWASP's minimum for Argon2id); ceiling of 256 MiB,
    /// 10 passes, 4 lanes (about 1.5 s on one core here: slow, but bounded).
    pub const DEFAULT: Bounds = Bounds {
        min: Cost {
            memory_kib: 19 * 1024,
            passes: 2,
            lanes: 1,
        },
        max: Cost {
            memory_kib: 256 * 1024,
            passes: 10,
            lanes: 4,
        },
    };

    fn check(&self, cost: Cost) -> Result<(), PasswordError> {
        let within = |v: u32, lo: u32, hi: u32| (lo..=hi).contains(&v);
        if within(cost.memory_kib, self.min.memory_kib, self.max.memory_kib)
            && within(cost.passes, self.min.passes, self.max.passes)
            && within(cost.lanes, self.min.lanes, self.max.lanes)
        {
            Ok(())
        } else {
            Err(PasswordError::CostOutOfBounds(cost))
        }
    }
}

/// Why a stretch specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The PHC string does not parse, or has unknown or missing fields.
    #[error("malformed Argon2id parameter string")]
    Malformed,
    /// The PHC string names another algorithm or version than Argon2id v=19.
    #[error("unsupported password hashing algorithm (only argon2id v=19)")]
    Unsupported,
    /// The costs fall outside the accepted [`Bounds`].
    #[error("Argon2id cost out of bounds: {0:?}")]
    CostOutOfBounds(Cost),
    /// The salt is shorter than 16 or longer than 48 bytes.
    #[error("Argon2id salt must be 16 to 48 bytes")]
    BadSalt,
}

/// Salt length for new specifications.
pub const SALT_LEN: usize = 16;
const MIN_SALT_LEN: usize = 16;
const MAX_PHC_LEN: usize = 160;

/// How to stretch one PIN or password: Argon2id costs plus a salt. Not secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Stretch {
    cost: Cost,
    salt: phc::Salt,
}

impl Stretch {
    /// A new specification with a fresh random salt. `cost` must lie within `bounds`.
    pub fn generate(cost: Cost, bounds: &Bounds) -> Result<Self, PasswordError> {
        bounds.check(cost)?;
        let salt = phc::Salt::new(&crate::random_array::<SALT_LEN>())
            .map_err(|_| PasswordError::BadSalt)?;
        Ok(Self { cost, salt })
    }

    /// A specification with a given salt (for a verifier the app must be able to recompute
    /// from the member id alone). `cost` must lie within `bounds`.
    pub fn with_salt(
        cost: Cost,
        salt: &[u8; SALT_LEN],
        bounds: &Bounds,
    ) -> Result<Self, PasswordError> {
        bounds.check(cost)?;
        let salt = phc::Salt::new(salt).map_err(|_| PasswordError::BadSalt)?;
        Ok(Self { cost, salt })
    }

    /// Parses a PHC string from untrusted storage, refusing costs outside `bounds`.
    pub fn from_phc(s: &str, bounds: &Bounds) -> Result<Self, PasswordError> {
        if s.len() > MAX_PHC_LEN {
            return Err(PasswordError::Malformed);
        }
        let phc = phc::PasswordHash::new(s).map_err(|_| PasswordError::Malformed)?;
        if phc.algorithm.as_str() != "argon2id" || phc.version != Some(0x13) {
            return Err(PasswordError::Unsupported);
        }
        if phc.hash.is_some() {
            return Err(PasswordError::Malformed);
        }
        let mut cost = [None; 3];
        for (name, value) in phc.params.iter() {
            let slot = match name.as_str() {
                "m" => 0,
                "t" => 1,
                "p" => 2,
                _ => return Err(PasswordError::Malformed),
            };
            let value = value.decimal().map_err(|_| PasswordError::Malformed)?;
            if cost[slot].replace(value).is_some() {
                return Err(PasswordError::Malformed);
            }
        }
        let [Some(memory_kib), Some(passes), Some(lanes)] = cost else {
            return Err(PasswordError::Malformed);
        };
        let cost = Cost {
            memory_kib,
            passes,
            lanes,
        };
        bounds.check(cost)?;
        let salt = phc.salt.ok_or(PasswordError::Malformed)?;
        if salt.len() < MIN_SALT_LEN {
            return Err(PasswordError::BadSalt);
        }
        Ok(Self { cost, salt })
    }

    /// The PHC string, to store beside what the stretched key protects.
    pub fn to_phc(&self) -> String {
        format!(
            "$argon2id$v=19$m={},t={},p={}${}",
            self.cost.memory_kib, self.cost.passes, self.cost.lanes, self.salt
        )
    }

    /// The costs.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// Stretches `secret` (a PIN or password) into 32 bytes of key material.
    ///
    /// At most [`MAX_CONCURRENT`] stretches run at once, each in a work buffer taken from a
    /// small pool: memory stays bounded however many unlocks arrive together (a fresh 64 MiB
    /// allocation per call also fragments the heap and is slower to fault in).
    pub fn derive(&self, secret: &[u8]) -> SecretBytes<32> {
        let params = Params::new(
            self.cost.memory_kib,
            self.cost.passes,
            self.cost.lanes,
            Some(32),
        )
        .expect("costs were checked against bounds inside Argon2's own limits");
        let mut out = [0u8; 32];
        let mut buffer = pool::take(params.block_count());
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(secret, self.salt.as_ref(), &mut out, &mut buffer[..])
            .expect("salt length and output length are within Argon2's limits");
        pool::give_back(buffer);
        SecretBytes::from_array(out)
    }
}

/// Stretches that may run at the same time.
pub const MAX_CONCURRENT: usize = 2;

/// Reusable Argon2 work buffers, and the gate that bounds how many are in use.
mod pool {
    use argon2::Block;
    use std::sync::{Condvar, Mutex};
    use zeroize::Zeroize;

    struct Pool {
        in_use: usize,
        free: Vec<Vec<Block>>,
    }

    static POOL: Mutex<Pool> = Mutex::new(Pool {
        in_use: 0,
        free: Vec::new(),
    });
    static RELEASED: Condvar = Condvar::new();
    /// Buffers larger than this (blocks of 1 KiB) are freed rather than kept.
    const KEEP_BLOCKS: usize = 64 * 1024;

    /// A buffer of at least `blocks` blocks, waiting while [`super::MAX_CONCURRENT`] are in use.
    pub(super) fn take(blocks: usize) -> Vec<Block> {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        while pool.in_use >= super::MAX_CONCURRENT {
            pool = RELEASED.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
        pool.in_use += 1;
        let mut buf = pool.free.pop().unwrap_or_default();
        drop(pool);
        buf.resize(blocks, Block::default());
        buf
    }

    /// Returns a buffer (wiped) to the pool.
    pub(super) fn give_back(mut buf: Vec<Block>) {
        for b in buf.iter_mut() {
            b.as_mut().zeroize();
        }
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool.in_use -= 1;
        if buf.len() <= KEEP_BLOCKS {
            pool.free.push(buf);
        }
        drop(pool);
        RELEASED.notify_one();
    }
}

impl fmt::Debug for Stretch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_phc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: Cost = Cost {
        memory_kib: 19 * 1024,
        passes: 2,
        lanes: 1,
    };

    #[test]
    fn phc_round_trip_and_derivation_is_stable() {
        let s = Stretch::generate(LOW, &Bounds::DEFAULT).unwrap();
        let text = s.to_phc();
        assert!(
            text.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{text}"
        );
        let back = Stretch::from_phc(&text, &Bounds::DEFAULT).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.derive(b"1234"), s.derive(b"1234"));
        assert_ne!(s.derive(b"1234"), s.derive(b"1235"));
    }

    #[test]
    fn salts_differ_so_keys_differ() {
        let a = Stretch::generate(LOW, &Bounds::DEFAULT).unwrap();
        let b = Stretch::generate(LOW, &Bounds::DEFAULT).unwrap();
        assert_ne!(a.derive(b"1234"), b.derive(b"1234"));
    }

    #[test]
    fn absurd_costs_are_refused_before_any_work() {
        let salt = "$c2FsdHNhbHRzYWx0c2FsdA";
        for params in [
            "m=4294967295,t=3,p=1",
            "m=65536,t=4294967295,p=1",
            "m=65536,t=3,p=255",
            "m=8,t=1,p=1",
            "m=65536,t=1,p=1",
        ] {
            let s = format!("$argon2id$v=19${params}{salt}");
            assert!(
                matches!(
                    Stretch::from_phc(&s, &Bounds::DEFAULT),
                    Err(PasswordError::CostOutOfBounds(_))
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn malformed_and_foreign_strings_are_refused() {
        let b = &Bounds::DEFAULT;
        let ok_salt = "c2FsdHNhbHRzYWx0c2FsdA";
        for s in [
            String::new(),
            "argon2id".into(),
            format!("$argon2id$v=19$m=65536,t=3${ok_salt}"),
            format!("$argon2id$v=19$m=65536,t=3,p=1,keyid=AAAA${ok_salt}"),
            format!("$argon2id$v=19$m=65536,t=3,p=1,m=65536${ok_salt}"),
            "$argon2id$v=19$m=65536,t=3,p=1".into(),
            format!("$argon2id$v=19$m=65536,t=3,p=1${ok_salt}$aGFzaGhhc2hoYXNo"),
            format!("$argon2id$v=19$m=65536,t=3,p=1${}", "A".repeat(200)),
        ] {
            assert_eq!(
                Stretch::from_phc(&s, b),
                Err(PasswordError::Malformed),
                "{s}"
            );
        }
        assert_eq!(
            Stretch::from_phc(&format!("$argon2i$v=19$m=65536,t=3,p=1${ok_salt}"), b),
            Err(PasswordError::Unsupported)
        );
        assert_eq!(
            Stretch::from_phc(&format!("$argon2id$v=16$m=65536,t=3,p=1${ok_salt}"), b),
            Err(PasswordError::Unsupported)
        );
        assert_eq!(
            Stretch::from_phc("$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ", b),
            Err(PasswordError::BadSalt)
        );
    }
}
