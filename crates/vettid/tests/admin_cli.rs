//! `vettid admin` through the real binary, on the database of a real API that a person
//! registers with over HTTP.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn admin(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vettid"))
        .arg("admin")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[track_caller]
fn fails_with(out: &Output, needle: &str) {
    assert!(!out.status.success(), "should fail: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
}

/// One HTTP/1.1 request by hand (the test needs no HTTP client): (status, JSON body).
async fn post(addr: std::net::SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw[9..12].parse().unwrap();
    let json = raw.split("\r\n\r\n").nth(1).unwrap();
    (status, serde_json::from_str(json).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_invites_lists_and_approves_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // a data directory that does not exist is refused, and nothing is created
    fails_with(&admin(&data, &["list-invites"]), "no such directory");
    assert!(!data.exists());

    // the API creates its state; a person will register with it over HTTP
    let app = vettid_api::App::open(vettid_api::ApiConfig::new(&data))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.serve(listener, async {
            let _ = stopped.await;
        })
        .await
    });

    assert_eq!(ok(&admin(&data, &["list-invites"])).trim(), "no invites");
    // A one-time admin token from the console: spent once for an admin session.
    let first = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let out = ok(&admin(&data, &["new-token"]));
    assert!(out.contains("admin.token"), "{out}");
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert_ne!(first, token);
    let exchange = |t: &str| serde_json::json!({ "token": t.trim() });
    let (status, _) = post(addr, "/v1/admin/sessions", &exchange(&first)).await;
    assert_eq!(status, 401, "the earlier token stopped working");
    let (status, session) = post(addr, "/v1/admin/sessions", &exchange(&token)).await;
    assert_eq!(status, 201, "{session}");
    let (status, _) = post(addr, "/v1/admin/sessions", &exchange(&token)).await;
    assert_eq!(status, 401, "spent");
    // A rotation also ends the sessions the earlier tokens gave.
    let base = format!("http://{addr}");
    let session = session["session_token"].as_str().unwrap().to_owned();
    let invites =
        || vettid_client::http::json(&base, "GET", "/v1/admin/invites", Some(&session), None);
    assert!(invites().await.is_ok());
    ok(&admin(&data, &["new-token"]));
    match invites().await {
        Err(vettid_client::ClientError::Api { status: 401, .. }) => {}
        other => panic!("the session outlived a new token: {other:?}"),
    }
    let out = ok(&admin(
        &data,
        &["create-invite", "--max-uses", "2", "--json"],
    ));
    let invite: Value = serde_json::from_str(&out).unwrap();
    let code = invite["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("VET-"), "{code}");
    assert_eq!(invite["max_uses"], 2);
    assert_eq!(invite["auto_approve"], false);
    let out = ok(&admin(
        &data,
        &[
            "create-invite",
            "--code",
            "team-2026-spring",
            "--auto-approve",
        ],
    ));
    assert!(
        out.contains("team-2026-spring") && out.contains("auto-approve"),
        "{out}"
    );
    fails_with(
        &admin(&data, &["create-invite", "--code", "team-2026-spring"]),
        "exists",
    );
    fails_with(
        &admin(&data, &["create-invite", "--max-uses", "0"]),
        "max_uses",
    );
    let out = ok(&admin(&data, &["list-invites"]));
    assert!(out.contains(&code) && out.contains("uses 0/2"), "{out}");

    let body = serde_json::json!({
        "first_name": "Grace", "last_name": "Hopper",
        "email": "grace@example.com", "invite_code": code,
    });
    let (status, registered) = post(addr, "/v1/register", &body).await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(registered["status"], "pending");
    let id = registered["registration_id"].as_str().unwrap();

    let out = ok(&admin(
        &data,
        &["list-registrations", "--status", "pending"],
    ));
    assert!(
        out.contains("grace@example.com") && out.contains(id),
        "{out}"
    );
    assert!(ok(&admin(&data, &["list-invites"])).contains("uses 1/2"));

    // approve by email, then again by id (idempotent)
    let out = ok(&admin(&data, &["approve", "Grace@Example.com"]));
    assert!(out.starts_with("approved: ") && out.contains(id), "{out}");
    let out = ok(&admin(&data, &["approve", id, "--json"]));
    let approved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(approved["status"], "approved");
    let out = ok(&admin(
        &data,
        &["list-registrations", "--json", "--status", "approved"],
    ));
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed["items"][0]["registration_id"], id);
    assert_eq!(
        ok(&admin(
            &data,
            &["list-registrations", "--status", "pending"]
        ))
        .trim(),
        "no registrations"
    );

    fails_with(
        &admin(&data, &["approve", "no-such-id"]),
        "no such registration",
    );
    fails_with(
        &admin(&data, &["approve", "nobody@example.com"]),
        "no registration",
    );
    fails_with(
        &admin(&data, &["list-registrations", "--status", "bogus"]),
        "unknown status",
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
