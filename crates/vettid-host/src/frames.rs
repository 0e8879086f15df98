//! Async reading and writing of channel frames (the codec itself is in `vettid-proto`).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vettid_proto::channel::{Frame, FrameError, MAX_FRAME};

/// Reads one frame; like [`Frame::read_from`], a bad frame is skipped and reported with its id.
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<Frame, FrameError> {
    let len = r.read_u32().await? as usize;
    if len > MAX_FRAME {
        let mut header = [0u8; 10];
        r.read_exact(&mut header).await?;
        tokio::io::copy(&mut r.take((len - 10) as u64), &mut tokio::io::sink()).await?;
        let id = u64::from_be_bytes(header[2..10].try_into().expect("8 bytes"));
        let kind = vettid_proto::channel::kind_of(header[1]);
        return Err(FrameError::Oversized { id, len, kind });
    }
    let mut whole = Vec::with_capacity(4 + len);
    whole.extend_from_slice(&(len as u32).to_be_bytes());
    whole.resize(4 + len, 0);
    r.read_exact(&mut whole[4..]).await?;
    Frame::read_from(&mut &whole[..])
}

/// Bodies up to this size are written together with their header in one system call.
const COALESCE: usize = 64 * 1024;

/// Writes one frame.
pub async fn write_frame(w: &mut (impl AsyncWrite + Unpin), frame: &Frame) -> std::io::Result<()> {
    if frame.body.len() <= COALESCE {
        // One write: a reader woken by the header alone would have to sleep again for the
        // body (a second wake-up costs tens of microseconds on a VM).
        let mut whole = Vec::with_capacity(frame.header().len() + frame.body.len());
        whole.extend_from_slice(&frame.header());
        whole.extend_from_slice(&frame.body);
        w.write_all(&whole).await?;
    } else {
        // Large bodies (snapshot chunks) separately: no need to copy many MiB once more.
        w.write_all(&frame.header()).await?;
        w.write_all(&frame.body).await?;
    }
    w.flush().await
}
