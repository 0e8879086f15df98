//! The enclave's device: where its measured configuration and its attestation documents come
//! from — never the host.
//!
//! On Nitro that is the NSM (`/dev/nsm`, [`vettid_attest::nitro::NsmAttestor`]) and the
//! configuration file inside the measured image. In development the platform that launched
//! this process plays both: it holds the other ends of the enclave's **stdin and stdout**
//! (frames as on the channel: [`ToDevice`] requests, [`FromDevice`] answers), which no other
//! process has. The enclave never writes anything else to stdout.

use std::io::{BufReader, Read, Write};
use std::sync::Mutex;
use vettid_attest::AttestRequest;
use vettid_attest::seal::{Attestor, SealError};
use vettid_proto::channel::{Frame, Kind, from_body, to_body};
use vettid_proto::platform::{FromDevice, ToDevice};

/// The two ends of the device channel and the last request id.
struct Io {
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
    next: u64,
}

/// The development device: the launching platform over stdin/stdout. One request at a time.
pub struct StdioDevice {
    io: Mutex<Io>,
}

impl StdioDevice {
    /// Over the process's own stdin and stdout.
    pub fn open() -> Self {
        Self::over(Box::new(std::io::stdin()), Box::new(std::io::stdout()))
    }

    /// Over a given pair of streams (tests).
    pub fn over(reader: Box<dyn Read + Send>, writer: Box<dyn Write + Send>) -> Self {
        Self {
            io: Mutex::new(Io {
                reader: BufReader::new(reader),
                writer,
                next: 0,
            }),
        }
    }

    fn ask(&self, request: &ToDevice) -> Result<FromDevice, String> {
        let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
        let Io {
            reader,
            writer,
            next,
        } = &mut *io;
        *next += 1;
        let id = *next;
        Frame {
            kind: Kind::Request,
            id,
            body: to_body(request),
        }
        .write_to(writer)
        .map_err(|e| format!("device: {e}"))?;
        loop {
            match Frame::read_from(reader) {
                Ok(f) if f.kind == Kind::Response && f.id == id => {
                    return from_body(&f.body).map_err(|_| "device: malformed answer".into());
                }
                Ok(_) => continue,
                Err(e) => return Err(format!("device: {e}")),
            }
        }
    }

    /// The measured configuration document this enclave was launched with.
    pub fn config(&self) -> Result<Vec<u8>, String> {
        match self.ask(&ToDevice::Config)? {
            FromDevice::Config(bytes) => Ok(bytes),
            FromDevice::Refused(e) => Err(e),
            _ => Err("device: unexpected answer".into()),
        }
    }
}

impl Attestor for StdioDevice {
    fn attest(&self, request: &AttestRequest) -> Result<Vec<u8>, SealError> {
        match self.ask(&ToDevice::Attest {
            nonce: request.nonce.clone(),
            public_key: request.public_key.clone(),
            user_data: request.user_data.clone(),
        }) {
            Ok(FromDevice::Document(doc)) => Ok(doc),
            Ok(FromDevice::Refused(e)) => Err(SealError::Attestation(e)),
            Ok(_) => Err(SealError::Attestation("unexpected device answer".into())),
            Err(e) => Err(SealError::Attestation(e)),
        }
    }
}
