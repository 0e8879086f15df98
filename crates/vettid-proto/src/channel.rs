//! Frames of the host ↔ enclave channel (Unix socket locally, vsock on Nitro).
//!
//! ```text
//! u32 BE length of what follows ‖ u8 version ‖ u8 kind ‖ u64 BE id ‖ body (postcard)
//! ```
//!
//! Both sides send requests and responses on the same stream; `kind` tells which, and a
//! response carries the id of its request, so many requests are in flight at once. A frame
//! longer than [`MAX_FRAME`] is skipped (its bytes are read and dropped) and reported as
//! [`FrameError::Oversized`] *with its id*, so the reader answers that one request with an
//! error and the stream goes on. A wrong version or kind is reported the same way.

use serde::{Serialize, de::DeserializeOwned};
use std::io::{self, Read, Write};

/// The channel format version (2: the typed errors of app protocol v2; host and enclave ship
/// together, and a frame of another version is refused).
pub const VERSION: u8 = 2;
/// Largest frame (after the length prefix) a reader accepts.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;
const HEADER: usize = 1 + 1 + 8;

/// Whether a frame asks or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request; the peer must answer with a [`Kind::Response`] of the same id.
    Request,
    /// The answer to the request with the same id.
    Response,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request or response.
    pub kind: Kind,
    /// Chosen by the requester, unique among its requests in flight.
    pub id: u64,
    /// The body (a postcard-encoded message).
    pub body: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended or failed: the channel is gone.
    #[error("channel closed: {0}")]
    Closed(#[from] io::Error),
    /// A frame was too large; its bytes were skipped. If it was a request, answer `id` with
    /// an error; if a response, fail the call `id` is waiting for.
    #[error("frame {id} too large ({len} bytes)")]
    Oversized {
        /// The frame's id.
        id: u64,
        /// Its announced length.
        len: usize,
        /// Request or response, if the header said so validly.
        kind: Option<Kind>,
    },
    /// A frame had an unknown version or kind. Handled like [`FrameError::Oversized`]; with no
    /// known kind it can only be dropped (answering it could reach the wrong caller).
    #[error("frame {id} has an unsupported version or kind")]
    Unsupported {
        /// The frame's id.
        id: u64,
        /// Request or response, if only the version was wrong.
        kind: Option<Kind>,
    },
    /// A frame was shorter than its header: nothing can be answered; the stream goes on.
    #[error("frame too short")]
    Short,
}

impl Frame {
    /// The length prefix and header that precede the body on the wire.
    pub fn header(&self) -> [u8; 4 + HEADER] {
        let len = u32::try_from(HEADER + self.body.len()).expect("frames stay far below 4 GiB");
        let mut out = [0u8; 4 + HEADER];
        out[..4].copy_from_slice(&len.to_be_bytes());
        out[4] = VERSION;
        out[5] = match self.kind {
            Kind::Request => 1,
            Kind::Response => 2,
        };
        out[6..].copy_from_slice(&self.id.to_be_bytes());
        out
    }

    /// Encodes the frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let len = u32::try_from(HEADER + self.body.len()).expect("frames stay far below 4 GiB");
        let mut out = Vec::with_capacity(4 + HEADER + self.body.len());
        out.extend_from_slice(&len.to_be_bytes());
        out.push(VERSION);
        out.push(match self.kind {
            Kind::Request => 1,
            Kind::Response => 2,
        });
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Writes the frame (the writer must be exclusive to this frame until it returns).
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.header())?;
        w.write_all(&self.body)?;
        w.flush()
    }

    /// Reads the next frame. On [`FrameError::Oversized`], [`FrameError::Unsupported`] and
    /// [`FrameError::Short`] the stream stays aligned on the next frame.
    pub fn read_from(r: &mut impl Read) -> Result<Frame, FrameError> {
        Frame::read_limited(r, MAX_FRAME)
    }

    /// [`Frame::read_from`], with requests longer than `max_request` refused as oversized
    /// before their body is read (responses may still be up to [`MAX_FRAME`]): how a reader
    /// bounds what its peer can make it hold.
    pub fn read_limited(r: &mut impl Read, max_request: usize) -> Result<Frame, FrameError> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len < HEADER {
            io::copy(&mut r.take(len as u64), &mut io::sink())?;
            return Err(FrameError::Short);
        }
        let mut header = [0u8; HEADER];
        r.read_exact(&mut header)?;
        let id = u64::from_be_bytes(header[2..10].try_into().expect("8 bytes"));
        let kind = kind_of(header[1]);
        let body_len = len - HEADER;
        if len > MAX_FRAME || (kind == Some(Kind::Request) && len > max_request) {
            io::copy(&mut r.take(body_len as u64), &mut io::sink())?;
            return Err(FrameError::Oversized { id, len, kind });
        }
        let mut body = vec![0u8; body_len];
        r.read_exact(&mut body)?;
        match (header[0], kind) {
            (VERSION, Some(kind)) => Ok(Frame { kind, id, body }),
            _ => Err(FrameError::Unsupported { id, kind }),
        }
    }
}

/// A frame that was too large or of an unsupported version: its body is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame too large or unsupported")]
pub struct BadFrame;

/// What a reader has to act on after reading one frame, so every reader routes bad frames
/// the same way: a bad request is answered with an error, a bad response fails the call
/// waiting for it, and a frame of unknown kind is dropped (answering it could reach the wrong
/// caller).
#[derive(Debug)]
pub enum Received {
    /// A request to answer; `Err` if its frame was bad (answer with an error).
    Request {
        /// Its id.
        id: u64,
        /// Its body.
        body: Result<Vec<u8>, BadFrame>,
    },
    /// The answer to our request `id`; `Err` if its frame was bad (fail that call).
    Response {
        /// The id of our request.
        id: u64,
        /// Its body.
        body: Result<Vec<u8>, BadFrame>,
    },
    /// Nothing to act on (a frame too short for a header, or of unknown kind).
    Nothing,
    /// The stream ended.
    Closed,
}

impl From<Result<Frame, FrameError>> for Received {
    fn from(read: Result<Frame, FrameError>) -> Self {
        match read {
            Ok(Frame {
                kind: Kind::Request,
                id,
                body,
            }) => Received::Request { id, body: Ok(body) },
            Ok(Frame {
                kind: Kind::Response,
                id,
                body,
            }) => Received::Response { id, body: Ok(body) },
            Err(FrameError::Oversized { id, kind, .. } | FrameError::Unsupported { id, kind }) => {
                match kind {
                    Some(Kind::Request) => Received::Request {
                        id,
                        body: Err(BadFrame),
                    },
                    Some(Kind::Response) => Received::Response {
                        id,
                        body: Err(BadFrame),
                    },
                    None => Received::Nothing,
                }
            }
            Err(FrameError::Short) => Received::Nothing,
            Err(FrameError::Closed(_)) => Received::Closed,
        }
    }
}

/// The kind byte of a header, if valid.
pub fn kind_of(byte: u8) -> Option<Kind> {
    match byte {
        1 => Some(Kind::Request),
        2 => Some(Kind::Response),
        _ => None,
    }
}

/// A body could not be decoded as the expected message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message body")]
pub struct MalformedBody;

/// Encodes a message body (postcard: compact, and large byte strings are copied, not parsed —
/// snapshots of many MiB cross the channel).
pub fn to_body<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_allocvec(msg).expect("serialising to a Vec cannot fail")
}

/// Decodes a message body; trailing bytes are refused.
pub fn from_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, MalformedBody> {
    match postcard::take_from_bytes(body) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(MalformedBody),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u64, body: &[u8]) -> Frame {
        Frame {
            kind: Kind::Request,
            id,
            body: body.to_vec(),
        }
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut stream = frame(1, b"one").encode();
        stream.extend(
            Frame {
                kind: Kind::Response,
                id: u64::MAX,
                body: vec![],
            }
            .encode(),
        );
        let mut r = &stream[..];
        assert_eq!(Frame::read_from(&mut r).unwrap(), frame(1, b"one"));
        let second = Frame::read_from(&mut r).unwrap();
        assert_eq!((second.kind, second.id), (Kind::Response, u64::MAX));
        assert!(matches!(
            Frame::read_from(&mut r),
            Err(FrameError::Closed(_))
        ));
    }

    #[test]
    fn a_bad_frame_fails_alone_and_the_stream_goes_on() {
        let mut stream = Vec::new();
        // Oversized: announced beyond the limit (body present so the reader can skip it).
        let big = MAX_FRAME + 1;
        stream.extend_from_slice(&(big as u32).to_be_bytes());
        stream.extend_from_slice(&[VERSION, 1]);
        stream.extend_from_slice(&7u64.to_be_bytes());
        stream.extend(std::iter::repeat_n(0u8, big - HEADER));
        // Wrong version.
        let mut other = frame(8, b"x").encode();
        other[4] = VERSION + 1;
        stream.extend(other);
        // Too short for a header.
        stream.extend_from_slice(&[0, 0, 0, 3, 1, 1, 1]);
        stream.extend(frame(9, b"ok").encode());
        let mut r = &stream[..];
        assert!(matches!(
            Frame::read_from(&mut r),
            Err(FrameError::Oversized {
                id: 7,
                kind: Some(Kind::Request),
                ..
            })
        ));
        assert!(matches!(
            Frame::read_from(&mut r),
            Err(FrameError::Unsupported {
                id: 8,
                kind: Some(Kind::Request)
            })
        ));
        assert!(matches!(Frame::read_from(&mut r), Err(FrameError::Short)));
        assert_eq!(Frame::read_from(&mut r).unwrap(), frame(9, b"ok"));
    }

    #[test]
    fn bodies_round_trip_and_garbage_is_refused() {
        use crate::enclave::{ToEnclave, VaultOp};
        let msg = ToEnclave::Vault {
            vault: "v".into(),
            op: VaultOp::Put {
                key: "k".into(),
                value: vec![7; 100_000],
            },
        };
        let body = to_body(&msg);
        assert_eq!(from_body::<ToEnclave>(&body), Ok(msg));
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(from_body::<ToEnclave>(&longer), Err(MalformedBody));
        for len in 0..body.len().min(64) {
            assert_eq!(
                from_body::<ToEnclave>(&body[..len]),
                Err(MalformedBody),
                "{len}"
            );
        }
        assert_eq!(from_body::<ToEnclave>(&[0xff; 16]), Err(MalformedBody));
    }

    #[test]
    fn bad_frames_are_routed_by_kind() {
        let over = |kind| {
            Err(FrameError::Oversized {
                id: 4,
                len: MAX_FRAME + 1,
                kind,
            })
        };
        assert!(matches!(
            Received::from(over(Some(Kind::Request))),
            Received::Request {
                id: 4,
                body: Err(BadFrame)
            }
        ));
        assert!(matches!(
            Received::from(over(Some(Kind::Response))),
            Received::Response {
                id: 4,
                body: Err(BadFrame)
            }
        ));
        assert!(matches!(Received::from(over(None)), Received::Nothing));
        assert!(matches!(
            Received::from(Err(FrameError::Short)),
            Received::Nothing
        ));
        assert!(matches!(
            Received::from(Ok(frame(5, b"x"))),
            Received::Request { id: 5, body: Ok(_) }
        ));
    }

    #[test]
    fn truncated_streams_are_closed_not_panics() {
        let full = frame(3, b"body").encode();
        for len in 0..full.len() {
            assert!(
                matches!(
                    Frame::read_from(&mut &full[..len]),
                    Err(FrameError::Closed(_))
                ),
                "{len}"
            );
        }
    }
}
