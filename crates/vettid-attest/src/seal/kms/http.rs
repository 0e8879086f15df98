//! The little HTTP/1.1 the key service needs: one request, one response, then the connection
//! closes. Bounded everywhere (line length, header count, body size) because the bytes come
//! over a relay the host controls, even if TLS authenticates them. Both ends are here: the
//! enclave's client and the dev key service's server.

use std::io::{BufRead, Write};

/// Longest request or status line or header line.
const MAX_LINE: usize = 8 * 1024;
/// Most header lines.
const MAX_HEADERS: usize = 64;
/// Largest body.
pub const MAX_BODY: usize = 1 << 20;

/// Why an HTTP message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The stream failed or ended early.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The message is not acceptable HTTP/1.1 within the bounds.
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
}

/// A request as the server reads it.
#[derive(Debug)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Headers (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// A response as the client reads it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn line(r: &mut impl BufRead) -> Result<String, HttpError> {
    let mut buf = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 2).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(HttpError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let line = buf
        .strip_suffix(b"\r\n")
        .ok_or(HttpError::Malformed("line too long or not CRLF-terminated"))?;
    String::from_utf8(line.to_vec()).map_err(|_| HttpError::Malformed("not UTF-8"))
}

fn read_headers(r: &mut impl BufRead) -> Result<Vec<(String, String)>, HttpError> {
    let mut out = Vec::new();
    loop {
        let l = line(r)?;
        if l.is_empty() {
            return Ok(out);
        }
        if out.len() == MAX_HEADERS {
            return Err(HttpError::Malformed("too many headers"));
        }
        let (name, value) = l
            .split_once(':')
            .ok_or(HttpError::Malformed("header without a colon"))?;
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

fn body(r: &mut impl BufRead, headers: &[(String, String)]) -> Result<Vec<u8>, HttpError> {
    if header(headers, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        loop {
            let size = line(r)?;
            let size = size.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| HttpError::Malformed("chunk size"))?;
            if size > MAX_BODY - out.len() {
                return Err(HttpError::Malformed("body too large"));
            }
            if size == 0 {
                // Trailers, then the empty line.
                read_headers(r)?;
                return Ok(out);
            }
            let start = out.len();
            out.resize(start + size, 0);
            r.read_exact(&mut out[start..])?;
            if !line(r)?.is_empty() {
                return Err(HttpError::Malformed("chunk not followed by CRLF"));
            }
        }
    }
    let len = match header(headers, "content-length") {
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| HttpError::Malformed("content-length"))?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(HttpError::Malformed("body too large"));
    }
    let mut out = vec![0; len];
    r.read_exact(&mut out)?;
    Ok(out)
}

/// Writes a request with a body (`Content-Length` and `Connection: close` are added).
pub fn write_request(
    w: &mut impl Write,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one response.
pub fn read_response(r: &mut impl BufRead) -> Result<Response, HttpError> {
    let status = line(r)?;
    let mut parts = status.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed("status line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .ok_or(HttpError::Malformed("status code"))?;
    let headers = read_headers(r)?;
    let body = body(r, &headers)?;
    Ok(Response { status, body })
}

/// Reads one request.
pub fn read_request(r: &mut impl BufRead) -> Result<Request, HttpError> {
    let first = line(r)?;
    let mut parts = first.split(' ');
    let (Some(method), Some(path), Some("HTTP/1.1"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let headers = read_headers(r)?;
    let body = body(r, &headers)?;
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

/// Writes a response and ends it (`Connection: close`).
pub fn write_response(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_a_response_round_trip() {
        let mut wire = Vec::new();
        write_request(
            &mut wire,
            "POST",
            "/",
            &[("x-amz-target", "T.Op".into())],
            b"{}",
        )
        .unwrap();
        let r = read_request(&mut &wire[..]).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/"));
        assert_eq!(r.header("x-amz-target"), Some("T.Op"));
        assert_eq!(r.body, b"{}");
        let mut wire = Vec::new();
        write_response(&mut wire, 400, "application/json", b"{\"x\":1}").unwrap();
        let r = read_response(&mut &wire[..]).unwrap();
        assert_eq!((r.status, &r.body[..]), (400, &b"{\"x\":1}"[..]));
    }

    #[test]
    fn chunked_bodies_are_read_and_bad_messages_refused() {
        let wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(read_response(&mut &wire[..]).unwrap().body, b"abcde");
        for bad in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n"[..],
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"SPDY/9 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",
            b"HTTP/1.1 200 OK\ncontent-length: 0\n\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            // A chunk size that would overflow the running total.
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n",
        ] {
            assert!(
                read_response(&mut &bad[..]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", "a".repeat(MAX_LINE + 1));
        assert!(read_response(&mut long.as_bytes()).is_err());
    }
}
