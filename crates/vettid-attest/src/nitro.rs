//! Attestation on real Nitro hardware, through the NSM device (`/dev/nsm`).
//!
//! Compiled only with the `nitro` feature. It cannot run outside a Nitro Enclave, so it is
//! kept to a thin adapter: everything it returns goes through the same [`crate::verify`] as
//! dev documents, and the sealing path around it is tested with the dev attestor.

use crate::AttestRequest;
use crate::seal::{Attestor, SealError};
use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use serde_bytes::ByteBuf;

/// An open NSM device. Closed on drop.
#[derive(Debug)]
pub struct NsmAttestor {
    fd: i32,
}

impl NsmAttestor {
    /// Opens `/dev/nsm`.
    pub fn open() -> Result<Self, SealError> {
        let fd = driver::nsm_init();
        if fd < 0 {
            return Err(SealError::Attestation(
                "cannot open /dev/nsm (not inside a Nitro Enclave?)".into(),
            ));
        }
        Ok(Self { fd })
    }
}

impl Drop for NsmAttestor {
    fn drop(&mut self) {
        driver::nsm_exit(self.fd);
    }
}

impl Attestor for NsmAttestor {
    fn attest(&self, request: &AttestRequest) -> Result<Vec<u8>, SealError> {
        let bytes = |b: &Option<Vec<u8>>| b.clone().map(ByteBuf::from);
        let response = driver::nsm_process_request(
            self.fd,
            Request::Attestation {
                user_data: bytes(&request.user_data),
                nonce: bytes(&request.nonce),
                public_key: bytes(&request.public_key),
            },
        );
        match response {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(SealError::Attestation(format!("NSM refused: {code:?}"))),
            _ => Err(SealError::Attestation("unexpected NSM response".into())),
        }
    }
}
