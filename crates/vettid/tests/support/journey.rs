//! The whole stack (`vettid up` on free ports) and members taken through registration,
//! sign-in and enrollment, for end-to-end tests.

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vettid_client::api::{Api, EnrollmentSecret};
use vettid_client::http;
use vettid_client::profile::Profile;
use vettid_client::vault::Unlocked;
use zeroize::Zeroizing;

pub fn nats_server() -> PathBuf {
    if let Some(p) = std::env::var_os("VETTID_NATS_SERVER") {
        return p.into();
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/nats-server");
    assert!(
        local.exists(),
        "tests need nats-server: run ./scripts/test, or set VETTID_NATS_SERVER"
    );
    local
}

/// `vettid up` on a temporary data directory; stopped when dropped.
pub struct UpStack {
    child: Child,
    pub api: String,
    pub nats: String,
    pub dir: tempfile::TempDir,
    invite: std::sync::OnceLock<String>,
    admin: std::sync::OnceLock<String>,
}

impl Drop for UpStack {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        let _ = kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

impl UpStack {
    pub fn start() -> UpStack {
        Self::start_with(&[])
    }

    /// [`UpStack::start`] with more `vettid up` flags.
    pub fn start_with(extra: &[&str]) -> UpStack {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vettid"))
            .args(["up", "--nats-port", "0"])
            .args(["--api-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(extra)
            .env("VETTID_NATS_SERVER", nats_server())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("up.err")).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let (mut api, mut nats) = (None, None);
        for line in lines.by_ref().map_while(Result::ok) {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("api"), Some(v)) => api = Some(v.to_owned()),
                (Some("nats"), Some(v)) => nats = Some(v.to_owned()),
                _ => {}
            }
            if line == "ready" {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let err = std::fs::read_to_string(dir.path().join("up.err")).unwrap_or_default();
        UpStack {
            api: api.unwrap_or_else(|| panic!("no api line from `vettid up`:\n{err}")),
            nats: nats.unwrap_or_else(|| panic!("no nats line from `vettid up`:\n{err}")),
            child,
            dir,
            invite: std::sync::OnceLock::new(),
            admin: std::sync::OnceLock::new(),
        }
    }

    /// The stack's data directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// An admin session, from the one-time token the API wrote at first start.
    pub async fn admin_token(&self) -> String {
        if let Some(session) = self.admin.get() {
            return session.clone();
        }
        let token = std::fs::read_to_string(self.data().join("admin.token")).unwrap();
        let v = http::json(
            &self.api,
            "POST",
            "/v1/admin/sessions",
            None,
            Some(&json!({ "token": token.trim() })),
        )
        .await
        .unwrap();
        let session = v["session_token"].as_str().unwrap().to_owned();
        let _ = self.admin.set(session.clone());
        session
    }

    async fn invite(&self) -> String {
        if let Some(code) = self.invite.get() {
            return code.clone();
        }
        let v = http::json(
            &self.api,
            "POST",
            "/v1/admin/invites",
            Some(&self.admin_token().await),
            Some(&json!({ "max_uses": 1000, "auto_approve": true })),
        )
        .await
        .unwrap();
        let code = v["code"].as_str().unwrap().to_owned();
        let _ = self.invite.set(code.clone());
        code
    }

    /// Registers `name` and signs in by magic link: (member id, member session token).
    pub async fn member(&self, name: &str) -> (String, String) {
        let email = Self::email(name);
        let reg = http::json(
            &self.api,
            "POST",
            "/v1/register",
            None,
            Some(&json!({ "first_name": "Test", "last_name": "Member", "email": email, "invite_code": self.invite().await })),
        )
        .await
        .unwrap();
        let member = reg["member_id"].as_str().unwrap().to_owned();
        http::json(
            &self.api,
            "POST",
            "/v1/auth/magic-link",
            None,
            Some(&json!({ "email": email })),
        )
        .await
        .unwrap();
        let token = self.mail_token(&email);
        let s = http::json(
            &self.api,
            "POST",
            "/v1/auth/verify",
            None,
            Some(&json!({ "token": token })),
        )
        .await
        .unwrap();
        (member, s["session_token"].as_str().unwrap().to_owned())
    }

    /// The sign-in token mailed to `email` (the API writes mail after answering: poll).
    fn mail_token(&self, email: &str) -> String {
        let outbox = self.data().join("outbox");
        for _ in 0..200 {
            for entry in std::fs::read_dir(&outbox).into_iter().flatten().flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                if text.contains(&format!("To: {email}"))
                    && let Some(t) = text.lines().find_map(|l| l.strip_prefix("Token: "))
                {
                    return t.trim().to_owned();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no mail for {email}");
    }

    /// A fresh enrollment code for a signed-in member.
    pub async fn enrollment_code(&self, session_token: &str) -> String {
        self.enrollment_session(session_token).await.0
    }

    /// The email [`UpStack::member`] registers `name` with.
    pub fn email(name: &str) -> String {
        format!("{name}@test.vettid.test")
    }

    /// A new enrollment session on the member's web page: (code, session id).
    pub async fn enrollment_session(&self, session_token: &str) -> (String, String) {
        let es = http::json(
            &self.api,
            "POST",
            "/v1/enroll/sessions",
            Some(session_token),
            None,
        )
        .await
        .unwrap();
        (
            es["code"].as_str().unwrap().to_owned(),
            es["session_id"].as_str().unwrap().to_owned(),
        )
    }

    /// The member types `comparison_code` into the web page of enrollment `session_id`.
    pub async fn confirm(
        &self,
        session_token: &str,
        session_id: &str,
        comparison_code: &str,
    ) -> Result<serde_json::Value, vettid_client::ClientError> {
        http::json(
            &self.api,
            "POST",
            &format!("/v1/enroll/sessions/{session_id}/confirm"),
            Some(session_token),
            Some(&json!({ "comparison_code": comparison_code })),
        )
        .await
    }

    /// `name`'s app presents `code` (with `name`'s email) and the member confirms it.
    pub async fn begin_confirmed(
        &self,
        name: &str,
        profile: &mut Profile,
        session_token: &str,
        (code, session_id): (String, String),
    ) -> vettid_client::app::Pending {
        let secret = EnrollmentSecret::Code {
            code,
            email: Self::email(name),
        };
        let pending = vettid_client::app::begin(
            profile,
            &Api::new(&self.api),
            &secret,
            &format!("{name}-phone"),
        )
        .await
        .unwrap();
        self.confirm(session_token, &session_id, pending.comparison_code())
            .await
            .unwrap();
        pending
    }

    /// What an enrolling test app types.
    pub fn enroll_input(&self, pin: &str) -> vettid_client::app::EnrollInput {
        vettid_client::app::EnrollInput {
            pin: Zeroizing::new(pin.as_bytes().to_vec()),
            password: Zeroizing::new(b"a long test password".to_vec()),
            nats_url: Some(self.nats.clone()),
        }
    }

    /// A profile directory pinned to this stack's trust anchors.
    pub fn profile(&self, name: &str) -> Profile {
        let dir = self.dir.path().join("profiles").join(name);
        let profile = Profile::open_or_create(&dir).unwrap();
        profile
            .pin_trust(
                &std::fs::read_to_string(self.data().join("dev-attestor/root.pem")).unwrap(),
                &std::fs::read_to_string(self.data().join("manifest/signing.pub")).unwrap(),
            )
            .unwrap();
        profile
    }

    /// Registers, signs in and enrolls `name` with `pin`: the enrolled profile.
    pub async fn enrolled(&self, name: &str, pin: &str) -> Profile {
        self.enrolled_with_phrase(name, pin).await.0
    }

    /// [`UpStack::enrolled`], then an unlocked session whose versions are checked against an
    /// in-memory mark rather than written to the profile (what the benches measure); and the
    /// member id.
    #[allow(dead_code)] // used by the benches, not every test binary
    pub async fn unlocked_in_memory(
        &self,
        name: &str,
        pin: &str,
    ) -> (String, Unlocked<vettid_client::vault::Mark>) {
        let mut profile = self.enrolled(name, pin).await;
        let mark = vettid_client::vault::Mark::new(
            profile.member().unwrap(),
            profile.state.identity().unwrap(),
        );
        let c = vettid_client::app::connect(&mut profile).await.unwrap();
        let unlocked = c
            .session
            .unlock(Zeroizing::new(pin.as_bytes().to_vec()), mark)
            .await
            .unwrap();
        (profile.member().unwrap().to_owned(), unlocked)
    }

    /// [`UpStack::enrolled`], and the recovery phrase the member was shown.
    pub async fn enrolled_with_phrase(
        &self,
        name: &str,
        pin: &str,
    ) -> (Profile, vettid_client::recovery::RecoveryPhrase) {
        let (_, session) = self.member(name).await;
        let enrollment = self.enrollment_session(&session).await;
        let mut profile = self.profile(name);
        let pending = self
            .begin_confirmed(name, &mut profile, &session, enrollment)
            .await;
        let mut shown = None;
        vettid_client::app::finish(
            &mut profile,
            &Api::new(&self.api),
            pending,
            self.enroll_input(pin),
            |_, _| {},
            |phrase| shown = Some(phrase),
        )
        .await
        .unwrap();
        (
            profile,
            shown.expect("the enrollment showed its recovery phrase"),
        )
    }
}

impl UpStack {
    /// [`UpStack::enrolled`], then a session in which the SDK unlocked the vault with `pin`,
    /// recording the versions it sees in the profile it owns (`seen()`).
    pub async fn unlocked(&self, name: &str, pin: &str) -> Unlocked<Profile> {
        let mut profile = self.enrolled(name, pin).await;
        let c = vettid_client::app::connect(&mut profile).await.unwrap();
        c.session
            .unlock(Zeroizing::new(pin.as_bytes().to_vec()), profile)
            .await
            .unwrap()
    }
}

/// Runs `vettid args…` with `env`: whether it succeeded, and stdout followed by stderr.
pub fn vettid_with(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vettid"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Asserts that no file under `dir` contains any of `needles` (the zero-knowledge scan).
pub fn stack_files_containing(dir: &Path, needles: &[&[u8]]) {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                for n in needles {
                    if bytes.windows(n.len()).any(|w| w == *n) {
                        hits.push(path.clone());
                    }
                }
            }
        }
    }
    assert!(hits.is_empty(), "secrets found at rest: {hits:?}");
}
