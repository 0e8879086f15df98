//! A minimal HTTP/1.1 GET for health checks of local processes.

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// The status code of `GET path` on `addr`, or `None` if nothing answered within a second.
pub(crate) async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(1), async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .ok()?;
        let res = sender.send_request(req).await.ok()?;
        Some(res.status().as_u16())
    })
    .await
    .ok()
    .flatten()
}

/// Whether a NATS server on `addr` sends its `INFO` greeting within a second (it does only
/// once it accepts clients).
pub(crate) async fn nats_greets(addr: SocketAddr) -> bool {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(1), async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut greeting = [0u8; 5];
        stream.read_exact(&mut greeting).await.ok()?;
        Some(&greeting == b"INFO ")
    })
    .await
    .ok()
    .flatten()
    .unwrap_or(false)
}
