//! Issue 11, finding 7: the client spoke only `http://`. It now speaks HTTPS (rustls) to a
//! server whose chain ends at a root it trusts, refuses any other, and refuses plain HTTP to
//! anything but this machine.

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use vettid_client::ClientError;
use vettid_client::api::Api;

/// A private CA and a TLS server for `localhost` under it that answers every request with
/// `body` (a real rustls server: the client's whole TLS path runs).
struct Server {
    ca_pem: String,
    port: u16,
}

async fn serve(body: &'static str) -> Server {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Server {
        ca_pem: ca.pem(),
        port,
    }
}

#[tokio::test]
async fn https_to_a_trusted_root_only_and_plain_http_only_to_this_machine() {
    let server = serve("{\"manifest\":true}").await;
    let api = Api::new(&format!("https://localhost:{}", server.port));
    // Not yet trusted: the handshake fails, nothing is sent.
    match api.pcr_manifest().await {
        Err(ClientError::Http(why)) => assert!(why.contains("TLS"), "{why}"),
        other => panic!("an untrusted server was accepted: {other:?}"),
    }
    vettid_client::http::add_trusted_root(&server.ca_pem).unwrap();
    assert_eq!(api.pcr_manifest().await.unwrap(), "{\"manifest\":true}");
    // The same server named by another name than its certificate's.
    let wrong_name = Api::new(&format!("https://127.0.0.1:{}", server.port));
    assert!(matches!(
        wrong_name.pcr_manifest().await,
        Err(ClientError::Http(_))
    ));
    // Plain HTTP leaves this machine for nobody.
    match Api::new("http://192.0.2.1:8080").pcr_manifest().await {
        Err(ClientError::Http(why)) => assert!(why.contains("in the clear"), "{why}"),
        other => panic!("plain http to another host: {other:?}"),
    }
    assert!(vettid_client::http::add_trusted_root("not a certificate").is_err());
}
