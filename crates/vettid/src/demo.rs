//! `vettid demo --data-dir DIR`: the whole journey on this machine, told step by step.
//!
//! Starts the stack (`vettid up`), bootstraps an admin, registers alice and bob with an
//! invite, signs them in by magic link (read from the outbox), opens an enrollment session
//! for each (alice scans the QR code, bob types the short code), enrolls both apps
//! (profiles in `DIR/demo/alice` and `DIR/demo/bob`), unlocks both vaults, shows a wrong PIN
//! being counted by the enclave, resets bob's PIN with his recovery phrase, has bob add his
//! laptop as a second device with his phone's approval, backs alice's vault up, then has
//! alice lose her phone and recover onto a new laptop by staged recovery
//! (a delay of seconds instead of 24 h), and stops the stack. Exits 0 only if every step
//! worked.

use anyhow::{Context, bail, ensure};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use vettid_client::ClientError;
use vettid_client::api::{Api, EnrollmentSecret, QrPayload};
use vettid_client::http;
use vettid_client::profile::Profile;
use vettid_proto::enclave::VaultError;
use zeroize::Zeroizing;

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Where the demo keeps the stack's data and the two app profiles.
    #[arg(long, default_value = ".vettid-demo")]
    data_dir: PathBuf,
    /// The nats-server binary (default: ./.tools/bin, then PATH).
    #[arg(long, env = "VETTID_NATS_SERVER")]
    nats_server: Option<PathBuf>,
}

/// The running stack; stopped (SIGTERM, then wait) when dropped.
struct Stack {
    child: Child,
    api: String,
    nats: String,
}

impl Drop for Stack {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        let _ = kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn start_stack(data_dir: &Path, nats_server: Option<&Path>) -> anyhow::Result<Stack> {
    let exe = std::env::current_exe().context("locating the vettid binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["up", "--nats-port", "0"])
        .args(["--recovery-delay-secs", &RECOVERY_DELAY_SECS.to_string()])
        .args(["--api-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = nats_server {
        cmd.arg("--nats-server").arg(p);
    }
    let mut child = cmd.spawn().context("starting `vettid up`")?;
    let out = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(out).lines();
    let (mut api, mut nats) = (None, None);
    for line in lines.by_ref() {
        let line = line?;
        let field = |label: &str| {
            line.trim()
                .strip_prefix(label)
                .map(|rest| rest.trim().split(' ').next().unwrap_or("").to_owned())
        };
        if let Some(v) = field("api ") {
            api = Some(v);
        } else if let Some(v) = field("nats ") {
            nats = Some(v);
        } else if line.trim().starts_with('✓') || line.trim().starts_with("starting") {
            println!("   {}", line.trim());
        }
        if line == "ready" {
            break;
        }
    }
    // Keep draining so `up` never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let stack = Stack {
        api: api.context("`vettid up` did not report the API address")?,
        nats: nats.context("`vettid up` did not report the NATS address")?,
        child,
    };
    Ok(stack)
}

/// The demo's staged-recovery delay (24 h by default; seconds here, so the story fits).
const RECOVERY_DELAY_SECS: u64 = 3;

fn step(n: &mut u32, text: &str) {
    *n += 1;
    println!("\n{n:>2}. {text}");
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    let mut n = 0;
    step(
        &mut n,
        "Starting the stack (nats-server, dev platform, host + enclave, api)",
    );
    let stack = start_stack(&data_dir, args.nats_server.as_deref())?;
    println!("   api {}  nats {}", stack.api, stack.nats);
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt
        .block_on(journey(&data_dir, &stack, &mut n))
        .and_then(|()| enclave_holds(&data_dir, &mut n));
    drop(stack);
    match result {
        Ok(()) => {
            println!(
                "\nDemo complete: every step worked. Profiles are in {}/demo.",
                data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("\ndemo failed at step {n}: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn journey(data_dir: &Path, stack: &Stack, n: &mut u32) -> anyhow::Result<()> {
    let api = stack.api.as_str();
    step(
        n,
        "Admin bootstrap: the API wrote a one-time admin token at first start",
    );
    let token_path = data_dir.join("admin.token");
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?;
    println!("   token file {} (mode 0600)", token_path.display());

    step(
        n,
        "Admin exchanges it (once) for an admin session of 12 hours",
    );
    let session = http::json(
        api,
        "POST",
        "/v1/admin/sessions",
        None,
        Some(&json!({ "token": token.trim() })),
    )
    .await?;
    let admin = session["session_token"]
        .as_str()
        .context("no admin session")?
        .to_owned();
    let admin = admin.as_str();
    println!("   the token is spent; `vettid admin new-token` makes another");

    step(n, "Admin creates an invite (two uses, auto-approve)");
    let invite = http::json(
        api,
        "POST",
        "/v1/admin/invites",
        Some(admin),
        Some(&json!({ "max_uses": 2, "auto_approve": true, "expires_in_secs": 3600 })),
    )
    .await?;
    let code = invite["code"]
        .as_str()
        .context("no invite code")?
        .to_owned();
    println!("   invite {code}");

    let demo = data_dir.join("demo");
    let mut members = Vec::new();
    for (name, pin, via_qr) in [("alice", "4821", true), ("bob", "7309", false)] {
        let email = format!("{name}@demo.vettid.test");
        step(n, &format!("{name} registers with the invite"));
        let reg = http::json(
            api,
            "POST",
            "/v1/register",
            None,
            Some(&json!({ "first_name": capitalise(name), "last_name": "Demo", "email": email, "invite_code": code })),
        )
        .await?;
        println!(
            "   registration {} — member {} — {}",
            reg["registration_id"].as_str().unwrap_or("?"),
            reg["member_id"].as_str().unwrap_or("?"),
            reg["status"].as_str().unwrap_or("?")
        );

        step(
            n,
            &format!("{name} signs in by magic link (mail written to the outbox)"),
        );
        let before = outbox_files(&data_dir.join("outbox"));
        http::json(
            api,
            "POST",
            "/v1/auth/magic-link",
            None,
            Some(&json!({ "email": email })),
        )
        .await?;
        let token = magic_token(&data_dir.join("outbox"), &before, &email)?;
        let session = http::json(
            api,
            "POST",
            "/v1/auth/verify",
            None,
            Some(&json!({ "token": token })),
        )
        .await?;
        let session_token = session["session_token"]
            .as_str()
            .context("no session token")?
            .to_owned();
        println!("   signed in; link used once and now void");

        step(n, &format!("{name} opens an enrollment session on the web"));
        let es = http::json(
            api,
            "POST",
            "/v1/enroll/sessions",
            Some(&session_token),
            None,
        )
        .await?;
        let short = es["code"].as_str().context("no code")?.to_owned();
        let qr_text = match es["qr_text"].as_str() {
            Some(t) => t.to_owned(),
            None => es["qr"].to_string(),
        };
        println!("   short code {short} (valid 5 minutes)");
        let secret = if via_qr {
            println!("   QR code for the app:");
            render_qr(&qr_text);
            EnrollmentSecret::from(QrPayload::parse(&qr_text)?)
        } else {
            EnrollmentSecret::Code {
                code: short.clone(),
                email: email.clone(),
            }
        };

        step(
            n,
            &format!(
                "{name}'s app presents the {} with its device keys and shows a comparison code",
                if via_qr {
                    "scanned QR code"
                } else {
                    "typed code and the email"
                }
            ),
        );
        let dir = demo.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let mut profile = Profile::open_or_create(&dir)?;
        let root = std::fs::read_to_string(data_dir.join("dev-attestor/root.pem"))?;
        let key = std::fs::read_to_string(data_dir.join("manifest/signing.pub"))?;
        profile.pin_trust(&root, &key)?;
        let app_api = Api::new(api);
        let pending =
            vettid_client::app::begin(&mut profile, &app_api, &secret, &format!("{name}-phone"))
                .await?;
        println!(
            "   the app shows {} — nothing of {name}'s reaches it until {name} confirms",
            pending.comparison_code()
        );

        step(
            n,
            &format!("{name} types that code into the web page: the device is confirmed"),
        );
        let session_id = es["session_id"].as_str().context("no session id")?;
        http::json(
            api,
            "POST",
            &format!("/v1/enroll/sessions/{session_id}/confirm"),
            Some(&session_token),
            Some(&json!({ "comparison_code": pending.comparison_code() })),
        )
        .await?;
        println!("   (someone who had seen the code and used it first would show another number)");

        step(
            n,
            &format!("{name}'s app enrolls: attestation, PIN, password verifier, vault, receipt"),
        );
        let input = vettid_client::app::EnrollInput {
            pin: Zeroizing::new(pin.as_bytes().to_vec()),
            password: Zeroizing::new(format!("{name}'s long passphrase").into_bytes()),
            nats_url: Some(stack.nats.clone()),
        };
        let mut shown = None;
        vettid_client::app::finish(
            &mut profile,
            &app_api,
            pending,
            input,
            |phase, detail| println!("   ✓ {phase:<22} {detail}"),
            |phrase| shown = Some(phrase),
        )
        .await?;
        let phrase = shown.context("the enrollment showed no recovery phrase")?;
        println!(
            "   ✓ recovery phrase made in the enclave: {} … (12 words, shown to {name} once)",
            phrase.words().split(' ').next().unwrap_or("")
        );
        let status = http::json(
            api,
            "GET",
            &format!(
                "/v1/enroll/sessions/{}",
                es["session_id"].as_str().unwrap_or("")
            ),
            Some(&session_token),
            None,
        )
        .await?;
        println!(
            "   web portal shows phase: {}",
            status["phase"].as_str().unwrap_or("?")
        );
        members.push((name, pin, dir, phrase, session_token));
    }

    for (name, pin, dir, _, _) in &members {
        step(n, &format!("{name} unlocks the vault from the app"));
        let mut profile = Profile::open_enrolled(dir)?;
        let c = vettid_client::app::connect(&mut profile).await?;
        println!(
            "   ✓ enclave attested (release {}), session open",
            c.enclave.release
        );
        let mut s = c
            .session
            .unlock(
                zeroize::Zeroizing::new(pin.as_bytes().to_vec()),
                &mut profile,
            )
            .await?;
        let (version, event_key) = (s.version(), s.event_key().clone());
        s.seen().store_event_key(&event_key)?;
        println!("   ✓ unlocked at signed version {version} (signature and rollback checked)");
    }

    step(
        n,
        "Someone tries a wrong PIN on bob's vault: the enclave counts it",
    );
    let (_, _, bob_dir, bob_phrase, _) = &members[1];
    let mut profile = Profile::open_enrolled(bob_dir)?;
    let mut c = vettid_client::app::connect(&mut profile).await?;
    c.session.lock().await?;
    match c
        .session
        .unlock(zeroize::Zeroizing::new(b"0000".to_vec()), &mut profile)
        .await
        .map(|_| ())
    {
        Err(ClientError::Vault(VaultError::WrongPin { attempts_left })) => {
            println!(
                "   ✓ refused: wrong PIN, {attempts_left} attempts left before the vault locks"
            )
        }
        other => bail!("a wrong PIN was not refused as expected: {other:?}"),
    }
    // A refused unlock ends that session: the app opens a new one (attested again).
    let mut c = vettid_client::app::connect(&mut profile).await?;
    let status = c.session.status(&mut profile).await?;
    let (unlocked, attempts_left) = (status.unlocked, status.attempts_left);
    ensure!(
        !unlocked && attempts_left == 9,
        "status after a wrong PIN: unlocked {unlocked}, {attempts_left} left"
    );
    println!(
        "   ✓ status: locked, {attempts_left} attempts left (durable in the enclave's guard records)"
    );
    c.session
        .unlock(
            zeroize::Zeroizing::new(members[1].1.as_bytes().to_vec()),
            &mut profile,
        )
        .await
        .context("bob's right PIN did not unlock")?;
    println!("   ✓ the right PIN unlocks again and resets the count");
    let (_, alice_pin, alice_dir, _, _) = &members[0];
    alice_and_bob_connect(alice_dir, alice_pin, &mut profile, members[1].1, n).await?;

    step(n, "Bob forgets his PIN: his recovery phrase sets a new one");
    let c = vettid_client::app::connect(&mut profile).await?;
    let s = c
        .session
        .reset_pin(
            bob_phrase,
            zeroize::Zeroizing::new(b"97531".to_vec()),
            &mut profile,
        )
        .await
        .context("bob's recovery phrase did not reset his PIN")?;
    println!(
        "   ✓ new PIN set in the enclave (counted like a PIN attempt); vault open at version {}",
        s.version()
    );
    let mut s = s;
    bob_adds_a_laptop(data_dir, api, &stack.nats, &mut s, n).await?;
    drop(s);

    step(
        n,
        "Alice backs up her vault: sealed in the enclave, stored by the operator, proven to open",
    );
    let (_, alice_pin, alice_dir, _, alice_web) = &members[0];
    let mut profile = Profile::open_enrolled(alice_dir)?;
    let c = vettid_client::app::connect(&mut profile).await?;
    let mut s = c
        .session
        .unlock(
            zeroize::Zeroizing::new(alice_pin.as_bytes().to_vec()),
            &mut profile,
        )
        .await?;
    s.create_secret(vettid_proto::secrets::ItemContent {
        name: "bank login".into(),
        folder: None,
        tags: vec![],
        data: vettid_proto::secrets::SecretData::Note {
            text: vettid_proto::secrets::Secret::new("alice's demo secret"),
        },
        fields: vec![],
    })
    .await?;
    println!("   ✓ stored a secret, “bank login”, encrypted in her vault");
    let made = s.backup_now().await?;
    println!(
        "   ✓ backup #{}: {} bytes of database in {} STREAM chunk(s) (its key also wrapped under her phrase)",
        made.id, made.bytes, made.chunks
    );
    let checked = s.verify_backup(made.id).await?;
    println!(
        "   ✓ the enclave opened backup #{} again: every chunk authenticated, database sound",
        checked.id
    );
    drop(s);
    drop(profile);
    recover_alice(api, &stack.nats, data_dir, alice_pin, alice_web, n).await
}

/// Alice loses her phone and moves her vault to a new device by staged recovery.
async fn recover_alice(
    api: &str,
    nats: &str,
    data_dir: &Path,
    pin: &str,
    web: &str,
    n: &mut u32,
) -> anyhow::Result<()> {
    step(
        n,
        "Alice loses her phone; signed in on the web, she asks to recover her vault",
    );
    let r = http::json(api, "POST", "/v1/recovery", Some(web), None).await?;
    println!(
        "   request {} — stage {}; her devices are told and she is mailed (outbox)",
        r["request_id"].as_str().unwrap_or("?"),
        r["stage"].as_str().unwrap_or("?")
    );
    println!(
        "   the delay is {RECOVERY_DELAY_SECS} s here (24 h by default); using the vault from an enrolled"
    );
    println!("   device meanwhile would cancel it — the enclave itself refuses then");
    step(
        n,
        "The delay passes; the web page shows a one-time recovery QR",
    );
    let ready = loop {
        let r = http::json(api, "GET", "/v1/recovery", Some(web), None).await?;
        match r["stage"].as_str() {
            Some("ready") => break r,
            Some("waiting") => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            other => bail!("the recovery is {other:?}, not waiting or ready"),
        }
    };
    // The enclave's own delay counts from the phone's last unlock, by its own clock; the
    // API counts whole seconds from the request: a second more covers the difference.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    println!(
        "   ready since {} (the enclave, too, waits {RECOVERY_DELAY_SECS} s past her phone's last unlock)",
        ready["ready_at"]
    );
    let qr = http::json(api, "POST", "/v1/recovery/qr", Some(web), None).await?;
    let qr_text = qr["qr_text"].as_str().context("no recovery QR")?;
    render_qr(qr_text);
    println!("   valid 10 minutes; asking for another voids this one");

    step(
        n,
        "Her new laptop scans it, and she confirms the laptop's comparison code on the web page",
    );
    let dir = data_dir.join("demo").join("alice-laptop");
    let _ = std::fs::remove_dir_all(&dir);
    let mut profile = Profile::open_or_create(&dir)?;
    let root = std::fs::read_to_string(data_dir.join("dev-attestor/root.pem"))?;
    let key = std::fs::read_to_string(data_dir.join("manifest/signing.pub"))?;
    profile.pin_trust(&root, &key)?;
    let app_api = Api::new(api);
    let payload = QrPayload::parse_recovery(qr_text)?;
    let pending =
        vettid_client::app::begin(&mut profile, &app_api, &payload.into(), "alice-laptop").await?;
    let session_id = qr["session_id"].as_str().context("no session id")?;
    http::json(
        api,
        "POST",
        &format!("/v1/enroll/sessions/{session_id}/confirm"),
        Some(web),
        Some(&json!({ "comparison_code": pending.comparison_code() })),
    )
    .await?;
    println!("   the laptop shows {}", pending.comparison_code());

    step(
        n,
        "The laptop attests the enclave and proves her PIN: the vault re-keys to the laptop",
    );
    let input = vettid_client::app::RecoverInput {
        proof: vettid_client::app::Proof::Pin(Zeroizing::new(pin.as_bytes().to_vec())),
        password: Zeroizing::new(b"alice's new long passphrase".to_vec()),
        nats_url: Some(nats.to_owned()),
    };
    let done =
        vettid_client::app::recover(&mut profile, &app_api, pending, input, |phase, detail| {
            println!("   ✓ {phase:<22} {detail}")
        })
        .await?;
    println!(
        "   ✓ {} old device removed; its NATS credentials are revoked and the enclave refuses it",
        done.removed_devices
    );
    let mut phone = Profile::open_enrolled(&data_dir.join("demo").join("alice"))?;
    ensure!(
        vettid_client::app::connect(&mut phone).await.is_err(),
        "the lost phone still reached the vault"
    );
    println!("   ✓ the lost phone can no longer connect");

    step(n, "Alice unlocks on the laptop: her secret is there");
    let c = vettid_client::app::connect(&mut profile).await?;
    let mut s = c
        .session
        .unlock(Zeroizing::new(pin.as_bytes().to_vec()), &mut profile)
        .await?;
    let items = s.list_secrets(None, None, None, false).await?;
    ensure!(
        items.iter().any(|i| i.name == "bank login"),
        "her secret did not survive the recovery"
    );
    println!(
        "   ✓ {} item(s), “bank login” among them, at version {}",
        items.len(),
        s.version()
    );
    Ok(())
}

/// Bob's second device: the laptop shows its keys, his phone (unlocked, with the PIN again)
/// has the enclave add them and gets a one-time invite from the API, the laptop finishes with
/// it and opens the vault under its own keys.
async fn bob_adds_a_laptop(
    data_dir: &Path,
    api: &str,
    nats: &str,
    phone: &mut vettid_client::vault::Unlocked<&mut Profile>,
    n: &mut u32,
) -> anyhow::Result<()> {
    step(
        n,
        "Bob adds his laptop as a second device: the laptop shows its keys as a QR code",
    );
    let dir = data_dir.join("demo").join("bob-laptop");
    let _ = std::fs::remove_dir_all(&dir);
    let mut laptop = Profile::open_or_create(&dir)?;
    let root = std::fs::read_to_string(data_dir.join("dev-attestor/root.pem"))?;
    let key = std::fs::read_to_string(data_dir.join("manifest/signing.pub"))?;
    laptop.pin_trust(&root, &key)?;
    let request = vettid_client::join::request(&mut laptop, api, "bob-laptop")?;
    render_qr(&request.text());

    step(
        n,
        "His phone scans it and approves with the PIN: the enclave adds the laptop's keys",
    );
    let pin = Zeroizing::new(b"97531".to_vec());
    let (device, document) = phone.add_device(pin.clone(), &request).await?;
    let invite = vettid_client::join::approve(phone.seen(), &request, &document).await?;
    let devices = phone.devices().await?;
    ensure!(devices.len() == 2, "the vault does not list two devices");
    println!(
        "   ✓ “{}” registered in a new keys generation; one-time invite for the laptop (15 min); bob's devices: {}",
        device.name,
        devices
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    step(
        n,
        "The laptop finishes: its own credentials, its own session keys, the vault unlocked",
    );
    let version = vettid_client::join::finish(&mut laptop, &invite, pin, Some(nats.to_owned()))
        .await
        .context("the laptop did not join")?;
    println!(
        "   ✓ the laptop opened the vault at version {version} (its unlock is now the vault's current one)"
    );
    Ok(())
}

/// Alice and Bob connect their vaults, exchange messages with receipts (one waits in
/// JetStream while Bob's vault is locked), and Bob ends the connection.
async fn alice_and_bob_connect(
    alice_dir: &Path,
    alice_pin: &str,
    bob_profile: &mut Profile,
    bob_pin: &str,
    n: &mut u32,
) -> anyhow::Result<()> {
    use vettid_proto::connections::ConnectionState;
    use vettid_proto::session::EventKind;
    let wait = std::time::Duration::from_secs(60);
    let pin = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
    let mut alice_profile = Profile::open_enrolled(alice_dir)?;
    let api = alice_profile
        .state
        .api_url
        .clone()
        .context("alice's profile knows no API")?;
    let c = vettid_client::app::connect(&mut alice_profile).await?;
    let mut alice = c.session.unlock(pin(alice_pin), &mut alice_profile).await?;
    let c = vettid_client::app::connect(bob_profile).await?;
    let mut bob = c.session.unlock(pin(bob_pin), &mut *bob_profile).await?;

    step(
        n,
        "Alice invites Bob to connect: her vault makes a single-use invitation (24 h)",
    );
    let (_, invitation) = alice.invite(Some("Bob".into()), None, false).await?;
    let link = vettid_client::connections::invitation_link(&invitation);
    render_qr(&link);
    println!(
        "   ✓ {} characters: her vault's identity and static key, a one-time X-Wing key and secret",
        link.len()
    );
    let code = vettid_client::connections::publish_invitation(&api, &invitation).await?;
    println!(
        "   ✓ or by code: {} (the API's directory keeps it sealed under the code, which it never sees)",
        code.display()
    );

    step(
        n,
        "Bob types the code; his app opens the invitation and the two vaults run the hybrid handshake through JetStream",
    );
    let typed = vettid_client::connections::ShortCode::parse(&code.display().to_lowercase())?;
    let found = vettid_client::connections::fetch_invitation(&api, &typed).await?;
    let bob_conn = bob.accept_invitation(found).await?;
    let review = |e: &EventKind| {
        matches!(
            e,
            EventKind::Connection {
                state: ConnectionState::PendingReview,
                ..
            }
        )
    };
    ensure!(
        bob.wait_for_event(wait, review).await? && alice.wait_for_event(wait, review).await?,
        "the vaults did not agree keys"
    );
    let a = alice
        .connections()
        .await?
        .into_iter()
        .next()
        .context("alice's vault has no connection")?;
    let b = bob.connection(bob_conn).await?;
    let sas = a.sas.clone().context("no code")?;
    println!("   ✓ Noise IKpsk2 + X-Wing, both transcripts signed with the vaults' identity keys");
    println!(
        "   ✓ alice's app shows {} {}, bob's shows {} {} (commit, then reveal: nobody chose it)",
        &sas[..3],
        &sas[3..],
        &b.sas.as_deref().unwrap_or("??????")[..3],
        &b.sas.as_deref().unwrap_or("??????")[3..]
    );

    step(n, "They read each other the code and both approve");
    alice.approve_connection(a.id, Some(sas.clone())).await?;
    bob.approve_connection(b.id, b.sas.clone()).await?;
    let active = |e: &EventKind| {
        matches!(
            e,
            EventKind::Connection {
                state: ConnectionState::Active,
                ..
            }
        )
    };
    ensure!(
        alice.wait_for_event(wait, active).await?,
        "the connection did not become active"
    );
    println!("   ✓ connection active on both sides");

    step(
        n,
        "Alice writes to Bob: his vault stores it and sends a delivered receipt",
    );
    let seq = alice.send_message(a.id, "Hi Bob, welcome!").await?;
    let delivered = |e: &EventKind| matches!(e, EventKind::Receipt { read: false, seqs, .. } if seqs.contains(&seq));
    ensure!(
        alice.wait_for_event(wait, delivered).await?,
        "no delivered receipt"
    );
    println!("   ✓ delivered: stored in bob's vault (the broker saw only “to bob”, and a size)");

    step(
        n,
        "Bob's vault is locked; Alice's next message waits in JetStream until he unlocks",
    );
    let session = bob.lock().await?;
    let seq = alice.send_message(a.id, "Are you there?").await?;
    println!("   ✓ message {seq} is in JetStream; bob's vault is locked");
    let mut bob = session.unlock(pin(bob_pin), &mut *bob_profile).await?;
    let arrived = |e: &EventKind| matches!(e, EventKind::Message { .. });
    ensure!(
        bob.wait_for_event(wait, arrived).await?,
        "the waiting message did not arrive"
    );
    let (history, _) = bob.messages(b.id, None, 10).await?;
    for m in history.iter().rev() {
        println!("   ← #{} {}", m.seq, m.text);
    }
    bob.mark_read(b.id, history[0].seq).await?;
    let read = |e: &EventKind| matches!(e, EventKind::Receipt { read: true, .. });
    ensure!(alice.wait_for_event(wait, read).await?, "no read receipt");
    println!("   ✓ it arrived after the unlock; bob read it and alice got the read receipt");

    step(
        n,
        "Alice rotates the connection's keys: a fresh X-Wing secret, signed by both vaults' pinned identity keys",
    );
    alice.rotate_connection(a.id).await?;
    ensure!(
        alice.wait_for_event(wait, active).await?,
        "the rotation was not answered"
    );
    let epoch = alice.connection(a.id).await?.epoch;
    println!("   ✓ epoch {epoch} on alice's side; bob's vault switches at her next message");

    step(
        n,
        "Bob asks Alice for her contact details; she grants them for two fetches",
    );
    alice
        .set_fields(vec![vettid_proto::profile::NewField {
            key: "contact.phone".into(),
            value: vettid_proto::secrets::Secret::new("+1 555 0100"),
            category: vettid_proto::profile::Category::Contact,
            sensitive: false,
            order: 0,
        }])
        .await?;
    let asked = bob
        .ask(
            b.id,
            vec![vettid_proto::profile::ShareTarget::Category(
                vettid_proto::profile::Category::Contact,
            )],
        )
        .await?;
    let incoming = |e: &EventKind| matches!(e, EventKind::Request { incoming: true, .. });
    ensure!(
        alice.wait_for_event(wait, incoming).await?,
        "alice's vault was not asked"
    );
    let request = alice
        .requests(Some(a.id))
        .await?
        .into_iter()
        .find(|r| r.incoming)
        .context("no request")?;
    alice.grant(request.id, Some(2), Some(24 * 3600)).await?;
    let answered = |e: &EventKind| {
        matches!(
            e,
            EventKind::Request {
                incoming: false,
                ..
            }
        )
    };
    ensure!(
        bob.wait_for_event(wait, answered).await?,
        "bob's vault got no answer"
    );
    let got = bob
        .requests(Some(b.id))
        .await?
        .into_iter()
        .find(|r| r.id == asked)
        .context("bob's request vanished")?;
    for (k, v) in &got.values {
        println!("   ← {k}: {v}");
    }
    println!(
        "   ✓ granted, sealed to bob's vault under epoch {}: {} more fetch(es) until alice's grant ends",
        bob.connection(b.id).await?.epoch,
        got.uses_left.unwrap_or(0)
    );

    step(
        n,
        "Bob revokes the connection: Alice's vault is told, both erase its keys",
    );
    bob.revoke_connection(b.id).await?;
    let revoked = |e: &EventKind| {
        matches!(
            e,
            EventKind::Connection {
                state: ConnectionState::Revoked,
                ..
            }
        )
    };
    ensure!(
        alice.wait_for_event(wait, revoked).await?,
        "alice was not told"
    );
    ensure!(
        alice.send_message(a.id, "still there?").await.is_err(),
        "a message on a revoked connection was accepted"
    );
    println!("   ✓ revoked on both sides; nothing more goes through it");
    Ok(())
}

/// What the enclave holds at the end: vaults open, at rest and evicted, and the memory it
/// accounts (from the host's control socket, as `vettid vault stats` shows it).
fn enclave_holds(data_dir: &Path, n: &mut u32) -> anyhow::Result<()> {
    step(
        n,
        "What the enclave holds now (an idle vault rests after 10 s: compressed and sealed, about 13 KiB)",
    );
    let socket = data_dir.join("host.sock");
    let mut c = vettid_host::control::Client::connect(&socket)
        .with_context(|| format!("cannot reach the host at {}", socket.display()))?;
    println!("   ✓ {}", crate::vault::enclave_stats(&mut c)?);
    Ok(())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn outbox_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// The token of the newest mail to `email` that was not in `before`, waiting up to 10 s for
/// the API to write it (it answers before sending, so timing reveals nothing).
fn magic_token(dir: &Path, before: &[PathBuf], email: &str) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(token) = find_token(dir, before, email)? {
            return Ok(token);
        }
        if std::time::Instant::now() > deadline {
            bail!("no sign-in mail for {email} in {}", dir.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn find_token(dir: &Path, before: &[PathBuf], email: &str) -> anyhow::Result<Option<String>> {
    let mut new: Vec<PathBuf> = outbox_files(dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    new.sort();
    for path in new.iter().rev() {
        let text = std::fs::read_to_string(path)?;
        if !text.contains(email) {
            continue;
        }
        if let Some(token) = text
            .lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .map(|t| t.trim().to_owned())
        {
            println!("   mail {}", path.display());
            return Ok(Some(token));
        }
    }
    Ok(None)
}

/// Prints a QR code with half-block characters (two rows per line).
pub(crate) fn render_qr(text: &str) {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else {
        println!("   (payload too long for a QR code)");
        return;
    };
    let width = code.width();
    let colors = code.to_colors();
    let dark = |x: isize, y: isize| {
        x >= 0
            && y >= 0
            && (x as usize) < width
            && (y as usize) < width
            && colors[y as usize * width + x as usize] == qrcode::Color::Dark
    };
    let quiet = 2isize;
    let mut y = -quiet;
    while y < width as isize + quiet {
        let mut line = String::from("   ");
        for x in -quiet..width as isize + quiet {
            line.push(match (dark(x, y), dark(x, y + 1)) {
                (true, true) => ' ',
                (true, false) => '▄',
                (false, true) => '▀',
                (false, false) => '█',
            });
        }
        println!("{line}");
        y += 2;
    }
}
