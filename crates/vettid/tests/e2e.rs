//! End to end, against the real processes: `vettid up` (nats-server in operator mode, dev
//! platform, host + enclave, api), apps through the SDK and the `vettid app` command.

mod support;

use futures::StreamExt;
use std::process::Command;
use std::time::Duration;
use support::journey::{UpStack, stack_files_containing, vettid_with};
use vettid_client::ClientError;
use vettid_client::api::{Api, EnrollmentSecret};
use vettid_proto::credential::CredentialError;
use vettid_proto::enclave::{Invalid, VaultError};
use vettid_proto::feed::FeedError;
use vettid_proto::secrets::SecretError;
use vettid_proto::session::{AppOp, AppReply, Channel, FromApp, SessionError, ToApp};
use zeroize::Zeroizing;

fn vettid(args: &[&str]) -> (bool, String) {
    vettid_with(args, &[])
}

/// Sends raw bytes on a member's channel and decodes the answer.
async fn raw(client: &vettid_client::vault::VaultClient, channel: Channel, body: Vec<u8>) -> ToApp {
    let subject = format!(
        "OwnerSpace.{}.forVault.{}",
        client.member(),
        channel.as_str()
    );
    let answer = client
        .nats()
        .unwrap()
        .request(subject, body.into())
        .await
        .unwrap();
    postcard::from_bytes(&answer.payload).unwrap()
}

#[test]
fn the_demo_tells_the_whole_story_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vettid"))
        .args(["demo", "--data-dir"])
        .arg(dir.path())
        .env("VETTID_NATS_SERVER", support::journey::nats_server())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "alice registers",
        "bob signs in by magic link",
        "attestation_verified",
        "✓ completed",
        "alice unlocks",
        "9 attempts left",
        "recovery phrase made in the enclave",
        "connection active on both sides",
        "delivered: stored in bob's vault",
        "it arrived after the unlock",
        "or by code: ",
        "epoch 1 on alice's side",
        "← contact.phone: +1 555 0100",
        "granted, sealed to bob's vault under epoch 1",
        "revoked on both sides",
        "new PIN set in the enclave",
        "one-time invite for the laptop",
        "the laptop opened the vault",
        "the enclave opened backup #1 again",
        "asks to recover her vault",
        "1 old device removed",
        "the lost phone can no longer connect",
        "“bank login” among them",
        "MiB accounted against the enclave's memory budget",
        "Demo complete",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(dir.path().join("demo/alice/nats.creds").exists());
    assert!(dir.path().join("demo/bob/credential.blob").exists());
    assert!(dir.path().join("demo/alice-laptop/nats.creds").exists());
    assert!(dir.path().join("demo/bob-laptop/nats.creds").exists());
}

/// The `vettid app` commands, each a separate process (an app that comes and goes): enroll
/// by code, unlock, status, whoami, lock, refresh-creds, and events that arrived while no
/// app was running. Then nothing of the PIN or password is anywhere in the stack's data.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_command_enrolls_unlocks_and_catches_up_on_events() {
    let stack = UpStack::start();
    let (_, session) = stack.member("carol").await;
    let (code, session_id) = stack.enrollment_session(&session).await;
    let profile = stack.dir.path().join("carol");
    let p = profile.to_str().unwrap();
    let data = stack.data();
    let secrets = stack.dir.path().join("pin.txt");
    std::fs::write(&secrets, "582913\n").unwrap();
    let password = "correct horse battery staple 1";
    let (ok, out) = {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vettid"))
            .args(["app", "--profile", p, "enroll", "--api", &stack.api])
            .args([
                "--email",
                &UpStack::email("carol"),
                "--code-env",
                "CAROL_CODE",
            ])
            .args([
                "--pin-file",
                secrets.to_str().unwrap(),
                "--password-env",
                "CAROL_PW",
            ])
            .args(["--trust", data.to_str().unwrap(), "--nats-url", &stack.nats])
            .env("CAROL_PW", password)
            .env("CAROL_CODE", &code)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The member reads the comparison code off the app and types it into the web page.
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut shown = String::new();
        let comparison = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the app exited before showing a comparison code:\n{shown}"
            );
            shown.push_str(&line);
            if let Some(c) = line.trim().strip_prefix("comparison code:") {
                break c.trim().to_owned();
            }
        };
        stack
            .confirm(&session, &session_id, &comparison)
            .await
            .unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{shown}{rest}{}", String::from_utf8_lossy(&out.stderr)),
        )
    };
    assert!(ok, "{out}");
    for phase in vettid_client::api::PHASES {
        assert!(out.contains(phase), "phase {phase} not shown:\n{out}");
    }
    // The recovery phrase, shown once as 12 numbered words.
    let tokens: Vec<&str> = out
        .split("recovery phrase")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let phrase: Vec<&str> = tokens
        .windows(2)
        .filter(|w| w[0].ends_with('.') && w[0].trim_end_matches('.').parse::<u8>().is_ok())
        .map(|w| w[1])
        .collect();
    assert_eq!(phrase.len(), 12, "{out}");
    let phrase = phrase.join(" ");
    assert!(
        vettid_client::recovery::RecoveryPhrase::parse(&phrase).is_ok(),
        "{phrase}"
    );
    let pin_file = secrets.to_str().unwrap();
    let (ok, out) = vettid(&["app", "--profile", p, "unlock", "--pin-file", pin_file]);
    assert!(ok && out.contains("vault unlocked"), "{out}");
    let (ok, out) = vettid(&["app", "--profile", p, "status"]);
    assert!(
        ok && out.contains("unlocked") && out.contains("10 left"),
        "{out}"
    );
    let (ok, out) = vettid(&["app", "--profile", p, "whoami"]);
    assert!(ok && out.contains("identity"), "{out}");
    let (ok, out) = vettid(&["app", "--profile", p, "lock"]);
    assert!(ok, "{out}");
    let (ok, out) = vettid(&["app", "--profile", p, "status"]);
    assert!(ok && out.contains("vault          locked"), "{out}");
    // A wrong PIN: refused, counted, and explained.
    std::fs::write(&secrets, "000000\n").unwrap();
    let (ok, out) = vettid(&["app", "--profile", p, "unlock", "--pin-file", pin_file]);
    assert!(!ok && out.contains("9 attempt(s) left"), "{out}");
    // Events of the unlock and the lock, published while no app process ran.
    let (ok, out) = vettid(&["app", "--profile", p, "events", "--wait-secs", "1"]);
    assert!(ok, "{out}");
    assert!(out.contains("Unlocked") && out.contains("Locked"), "{out}");
    assert!(out.contains("2 event(s)"), "{out}");
    // Acknowledged: not delivered again.
    let (ok, out) = vettid(&["app", "--profile", p, "events", "--wait-secs", "1"]);
    assert!(ok && out.contains("0 event(s)"), "{out}");
    let (ok, out) = vettid(&["app", "--profile", p, "refresh-creds"]);
    assert!(ok && out.contains("new NATS credentials"), "{out}");
    let (ok, out) = vettid(&["app", "--profile", p, "whoami"]);
    assert!(ok, "renewed credentials work: {out}");
    // Forgot the PIN: the phrase sets a new one; the old one no longer opens the vault.
    let reset = |phrase: &str| {
        vettid_with(
            &[
                "app",
                "--profile",
                p,
                "reset-pin",
                "--phrase-env",
                "PHRASE",
                "--pin-env",
                "NEW",
            ],
            &[("PHRASE", phrase), ("NEW", "731642")],
        )
    };
    let (ok, out) = reset("abandon abandon abandon");
    assert!(!ok && out.contains("12 words"), "{out}");
    let (ok, out) = reset(&phrase);
    assert!(ok && out.contains("new PIN set"), "{out}");
    std::fs::write(&secrets, "582913\n").unwrap();
    let (ok, out) = vettid(&["app", "--profile", p, "unlock", "--pin-file", pin_file]);
    assert!(!ok && out.contains("wrong PIN"), "{out}");
    std::fs::write(&secrets, "731642\n").unwrap();
    let (ok, out) = vettid(&["app", "--profile", p, "unlock", "--pin-file", pin_file]);
    assert!(ok && out.contains("vault unlocked"), "{out}");

    // Zero knowledge: neither the PIN, the password nor the recovery phrase appears in any
    // byte the operator holds (objects, JetStream, logs, metadata DB, NATS resolver).
    stack_files_containing(
        &data,
        &[b"582913", b"731642", password.as_bytes(), phrase.as_bytes()],
    );
}

/// The recovery phrase: a wrong one is counted with the PIN's attempts and typed; the right
/// one sets a new PIN and opens the vault; the data is all there; the phrase is nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_pin_is_reset_with_the_recovery_phrase() {
    use vettid_client::recovery::RecoveryPhrase;
    let stack = UpStack::start();
    let (mut profile, phrase) = stack.enrolled_with_phrase("rita", "1357").await;
    let pin = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
    let c = vettid_client::app::connect(&mut profile).await.unwrap();
    let mut s = c.session.unlock(pin("1357"), &mut profile).await.unwrap();
    s.create_secret(vettid_proto::secrets::ItemContent {
        name: "kept".into(),
        folder: None,
        tags: vec![],
        data: vettid_proto::secrets::SecretData::Note {
            text: vettid_proto::secrets::Secret::new("marker-kept-8e1d"),
        },
        fields: vec![],
    })
    .await
    .unwrap();
    s.lock().await.unwrap();
    // A phrase of another vault: refused, typed, counted.
    let other = RecoveryPhrase::from_entropy(&[7; 16]);
    let c = vettid_client::app::connect(&mut profile).await.unwrap();
    let r = c
        .session
        .reset_pin(&other, pin("2468"), &mut profile)
        .await
        .map(|_| ());
    assert!(
        matches!(
            r,
            Err(ClientError::Vault(VaultError::WrongRecoveryPhrase {
                attempts_left: 9
            }))
        ),
        "{r:?}"
    );
    let c = vettid_client::app::connect(&mut profile).await.unwrap();
    let mut s = c
        .session
        .reset_pin(&phrase, pin("2468"), &mut profile)
        .await
        .unwrap();
    let items = s.list_secrets(None, None, None, false).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["kept"]
    );
    drop(s);
    let c = vettid_client::app::connect(&mut profile).await.unwrap();
    let r = c
        .session
        .unlock(pin("1357"), &mut profile)
        .await
        .map(|_| ());
    assert!(
        matches!(
            r,
            Err(ClientError::Vault(VaultError::WrongPin {
                attempts_left: 9
            }))
        ),
        "the count started over after the reset, and the old PIN is gone: {r:?}"
    );
    let c = vettid_client::app::connect(&mut profile).await.unwrap();
    assert!(c.session.unlock(pin("2468"), &mut profile).await.is_ok());
    let words = phrase.words().to_owned();
    stack_files_containing(&stack.data(), &[words.as_bytes(), b"marker-kept-8e1d"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_reordered_stale_and_misrouted_requests_are_refused() {
    let stack = UpStack::start();
    let mut profile = stack.enrolled("dave", "4321").await;
    let mut c = vettid_client::app::connect(&mut profile).await.unwrap();
    assert!(matches!(
        c.session.unchecked_call(AppOp::Ping).await,
        Ok(AppReply::Pong)
    ));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let ten = c.session.raw_request(AppOp::Ping, 10, now()).unwrap();
    let eight = c.session.raw_request(AppOp::Ping, 8, now()).unwrap();
    let subject_channel = Channel::Session;
    // Counter 10 after 1: accepted (gaps are fine: the host may drop messages).
    assert!(matches!(
        raw(&c.client, subject_channel, ten.clone()).await,
        ToApp::Reply { counter: 10, .. }
    ));
    // The same message again: a replay.
    assert_eq!(
        raw(&c.client, subject_channel, ten).await,
        ToApp::Refused(SessionError::Replayed)
    );
    // An older one arriving late: reordered.
    assert_eq!(
        raw(&c.client, subject_channel, eight).await,
        ToApp::Refused(SessionError::Replayed)
    );
    // A request whose timestamp is ten minutes old: stale.
    let old = c
        .session
        .raw_request(AppOp::Ping, 11, now() - 600_000)
        .unwrap();
    assert_eq!(
        raw(&c.client, subject_channel, old).await,
        ToApp::Refused(SessionError::Stale)
    );
    // The session message on another channel: refused.
    let other = c.session.raw_request(AppOp::Ping, 12, now()).unwrap();
    assert_eq!(
        raw(&c.client, Channel::Attestation, other.clone()).await,
        ToApp::Refused(SessionError::WrongChannel)
    );
    assert_eq!(
        raw(&c.client, Channel::Enroll, other).await,
        ToApp::Refused(SessionError::WrongChannel)
    );
    // Garbage and unknown sessions.
    assert_eq!(
        raw(&c.client, subject_channel, b"\xff\x00garbage".to_vec()).await,
        ToApp::Refused(SessionError::Malformed)
    );
    let unknown = postcard::to_allocvec(&FromApp::Request {
        session: [9; 16],
        counter: 99,
        ciphertext: vec![0; 40],
    })
    .unwrap();
    assert_eq!(
        raw(&c.client, subject_channel, unknown).await,
        ToApp::Refused(SessionError::UnknownSession)
    );
    // A flipped bit in the ciphertext.
    let mut bad = c.session.raw_request(AppOp::Ping, 20, now()).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        raw(&c.client, subject_channel, bad).await,
        ToApp::Refused(SessionError::Crypto)
    );
    // The session still works, above every counter seen.
    assert!(matches!(
        c.session.unchecked_call(AppOp::Ping).await,
        Ok(AppReply::Pong)
    ));
    // Operations outside their channel are refused inside the session too.
    let r = c
        .session
        .unchecked_call(AppOp::Enroll {
            pin: Zeroizing::new(b"1234".to_vec()),
            password_verifier: Zeroizing::new([0; 32]),
            device_name: "x".into(),
            device: vettid_proto::auth::DeviceBinding::sign(
                "x",
                &[0; 32],
                &vettid_crypto::sign::SigningKey::generate(),
            ),
        })
        .await;
    assert!(
        matches!(
            r,
            Err(ClientError::Vault(VaultError::Invalid(
                Invalid::WrongChannel
            )))
        ),
        "{r:?}"
    );
    // Bad input to a vault operation changes nothing.
    let r = c
        .session
        .unchecked_call(AppOp::Unlock {
            pin: zeroize::Zeroizing::new(vec![]),
        })
        .await;
    assert!(matches!(r, Err(ClientError::Vault(_))), "{r:?}");
    assert!(matches!(
        c.session
            .unchecked_call(AppOp::Unlock {
                pin: zeroize::Zeroizing::new(b"4321".to_vec())
            })
            .await,
        Ok(AppReply::Unlocked { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_device_cannot_open_a_session_or_try_a_pin() {
    let stack = UpStack::start();
    let mut profile = stack.enrolled("erin", "2468").await;
    let c = vettid_client::app::connect(&mut profile).await.unwrap();
    let trust = profile.trust().unwrap();
    let api = Api::new(&stack.api);
    let manifest = trust
        .manifest(&api.pcr_manifest().await.unwrap(), 0)
        .unwrap();
    let enclave = c.client.attest(&trust, &manifest).await.unwrap();
    let stranger = vettid_crypto::SecretBytes::random();
    let r = c
        .client
        .open_session(Channel::Session, &stranger, &enclave)
        .await;
    assert!(
        matches!(
            r,
            Err(ClientError::Session(SessionError::DeviceNotRegistered))
        ),
        "{:?}",
        r.err()
    );
}

/// A wrong root, a wrong nonce or PCRs the manifest does not list: the app refuses the
/// enclave — and in the enrollment flow, before any PIN or password is sent (the vault is
/// not created: a later, trusting enrollment of the same member succeeds).
#[tokio::test(flavor = "multi_thread")]
async fn attestation_failures_abort_before_anything_secret() {
    use vettid_attest::dev::DevRoot;
    use vettid_attest::manifest::{Manifest, PcrSet};
    let stack = UpStack::start();
    let (_, session) = stack.member("frank").await;
    let trust = stack.profile("frank").trust().unwrap();
    let api = Api::new(&stack.api);
    let manifest = trust
        .manifest(&api.pcr_manifest().await.unwrap(), 0)
        .unwrap();

    // Enrollment creds to ask for documents directly.
    let profile = stack.profile("frank");
    let (code, session_id) = stack.enrollment_session(&session).await;
    let secret = EnrollmentSecret::Code {
        code,
        email: UpStack::email("frank"),
    };
    let device = profile.device_key().unwrap().verifying_key().to_bytes();
    let noise = vettid_crypto::noise::public_key(&profile.noise_key().unwrap());
    let e = api
        .authenticate(&secret, "probe", &device, &noise)
        .await
        .unwrap();
    let comparison =
        vettid_proto::auth::comparison_code(&e.session_id, &e.comparison_salt, &device, &noise);
    stack
        .confirm(&session, &session_id, &comparison)
        .await
        .unwrap();
    let key = profile.nats_key().unwrap();
    let issued = api.enrollment_creds(&e, &key.public_key()).await.unwrap();
    profile.store_jwt(&issued.jwt).unwrap();
    let client =
        vettid_client::vault::connect(&stack.nats, &profile.creds().unwrap(), &e.member_id)
            .await
            .unwrap();
    let nonce = [7u8; 32];
    let ToApp::Attestation {
        doc,
        kem_public_key,
    } = raw(
        &client,
        Channel::Attestation,
        postcard::to_allocvec(&FromApp::Attest { nonce }).unwrap(),
    )
    .await
    else {
        panic!("no attestation");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let check =
        |trust: &vettid_client::vault::Trust, manifest: &Manifest, nonce: &[u8; 32], kem: &[u8]| {
            vettid_client::vault::check_attestation(trust, manifest, nonce, &doc, kem, now)
        };
    assert!(check(&trust, &manifest, &nonce, &kem_public_key).is_ok());
    let untrusted = |r: Result<_, ClientError>, what: &str| match r {
        Err(ClientError::Untrusted(why)) => assert!(why.contains(what), "{why}"),
        other => panic!("expected Untrusted({what}), got {:?}", other.map(|_| ())),
    };
    // Another root.
    let other_root = DevRoot::generate(now);
    let key_hex = std::fs::read_to_string(stack.data().join("manifest/signing.pub")).unwrap();
    let wrong_root =
        vettid_client::vault::Trust::from_pem_and_hex(&other_root.cert_pem(), &key_hex).unwrap();
    untrusted(
        check(&wrong_root, &manifest, &nonce, &kem_public_key),
        "chain",
    );
    // Another nonce.
    untrusted(
        check(&trust, &manifest, &[8u8; 32], &kem_public_key),
        "nonce",
    );
    // PCRs not in the manifest (signed by the right key, listing another release only).
    let signing =
        vettid_crypto::sign::SigningKey::from_seed(&vettid_crypto::SecretBytes::from_array({
            let mut seed = [0u8; 32];
            hex::decode_to_slice(
                std::fs::read_to_string(stack.data().join("manifest/signing.key"))
                    .unwrap()
                    .trim(),
                &mut seed,
            )
            .unwrap();
            seed
        }));
    let other = Manifest {
        serial: manifest.serial + 1,
        issued_at: now,
        sets: vec![PcrSet::new(
            "other",
            &vettid_attest::Measurement::of_enclave(b"other", b""),
            0,
            now + 3600,
            true,
        )],
    };
    let other = trust.manifest(&other.sign(&signing).unwrap(), 0).unwrap();
    untrusted(check(&trust, &other, &nonce, &kem_public_key), "PCRs");
    // A KEM key other than the bound one.
    let swapped = vettid_crypto::noise::KemSecret::generate().public_key();
    untrusted(check(&trust, &manifest, &nonce, &swapped), "X-Wing");

    // The enrollment flow with a wrong root stops at attestation: no vault is made.
    let enrollment = stack.enrollment_session(&session).await;
    let dir = stack.dir.path().join("profiles/frank-wrong");
    let mut wrong = vettid_client::profile::Profile::open_or_create(&dir).unwrap();
    wrong.pin_trust(&other_root.cert_pem(), &key_hex).unwrap();
    let pending = stack
        .begin_confirmed("frank", &mut wrong, &session, enrollment)
        .await;
    let mut phases = Vec::new();
    let r = vettid_client::app::finish(
        &mut wrong,
        &api,
        pending,
        stack.enroll_input("135790"),
        |p, _| phases.push(p.to_owned()),
        |_| panic!("no vault, no phrase"),
    )
    .await;
    assert!(matches!(r, Err(ClientError::Untrusted(_))), "{:?}", r.err());
    assert_eq!(
        phases,
        ["authenticated", "confirmed", "nats_connected"],
        "stopped before attestation passed"
    );
    let enrollment = stack.enrollment_session(&session).await;
    let mut right = stack.profile("frank-right");
    let pending = stack
        .begin_confirmed("frank", &mut right, &session, enrollment)
        .await;
    vettid_client::app::finish(
        &mut right,
        &api,
        pending,
        stack.enroll_input("135790"),
        |_, _| {},
        drop,
    )
    .await
    .expect("no vault was created by the refused attempt");
}

/// Tenant isolation by the broker with the credentials the API issued to real apps.
#[tokio::test(flavor = "multi_thread")]
async fn a_members_credentials_reach_only_its_own_subjects() {
    let stack = UpStack::start();
    let alice = stack.enrolled("alice", "1111").await;
    let bob = stack.enrolled("bob", "2222").await;
    let (alice_id, bob_id) = (
        alice.member().unwrap().to_owned(),
        bob.member().unwrap().to_owned(),
    );
    let (tx, mut violations) = tokio::sync::mpsc::unbounded_channel();
    let nc = async_nats::ConnectOptions::with_credentials(&alice.creds().unwrap())
        .unwrap()
        .custom_inbox_prefix(vettid_nats::member_inbox_prefix(&alice_id))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = e {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(&stack.nats)
        .await
        .unwrap();
    // Publishing to bob's vault: refused by the server.
    nc.publish(format!("OwnerSpace.{bob_id}.forVault.session"), "x".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let v = tokio::time::timeout(Duration::from_secs(10), violations.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        v.contains("Permissions Violation") && v.contains(&bob_id),
        "{v}"
    );
    // Subscribing to bob's events: refused.
    let mut sub = nc
        .subscribe(format!("OwnerSpace.{bob_id}.forApp.>"))
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let v = tokio::time::timeout(Duration::from_secs(10), violations.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        v.contains("Permissions Violation") && v.contains("Subscription"),
        "{v}"
    );
    // Bob's vault gets events; alice's subscription sees none of them, while alice's own
    // request path still works (a positive signal that the connection is alive).
    let mut bob_profile = bob;
    let mut c = vettid_client::app::connect(&mut bob_profile).await.unwrap();
    c.session
        .unchecked_call(AppOp::Unlock {
            pin: zeroize::Zeroizing::new(b"2222".to_vec()),
        })
        .await
        .unwrap();
    let mut alice_profile = alice;
    let mut a = vettid_client::app::connect(&mut alice_profile)
        .await
        .unwrap();
    assert!(matches!(
        a.session.unchecked_call(AppOp::Ping).await,
        Ok(AppReply::Pong)
    ));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .map_or(true, |m| m.is_none())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_credentials_are_refused_at_once() {
    let stack = UpStack::start();
    let mut gina = stack.enrolled("gina", "3333").await;
    let member = gina.member().unwrap().to_owned();
    assert!(vettid_client::app::connect(&mut gina).await.is_ok());
    let r = vettid_client::http::json(
        &stack.api,
        "POST",
        &format!("/v1/admin/members/{member}/revoke-nats"),
        Some(&stack.admin_token().await),
        None,
    )
    .await
    .unwrap();
    // One NATS key (the app's) carried both its enrollment and its member JWTs.
    assert_eq!(r["revoked"].as_u64(), Some(1), "{r}");
    match vettid_client::app::connect(&mut gina).await {
        Err(ClientError::Nats(why)) => assert!(why.to_lowercase().contains("authoriz"), "{why}"),
        other => panic!("revoked creds were accepted: {:?}", other.err()),
    }
}

/// Issue 11, finding 7: a renewal used to leave the credentials it replaced valid for their
/// whole 24 h. Now the server refuses them as soon as the renewal answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_renewal_ends_the_credentials_it_replaces() {
    let stack = UpStack::start();
    let ivy = stack.enrolled("ivy", "4444").await;
    let member = ivy.member().unwrap().to_owned();
    let old = ivy.creds().unwrap();
    vettid_client::vault::connect(&stack.nats, &old, &member)
        .await
        .expect("the enrolled credentials work");
    vettid_client::app::refresh(&ivy).await.unwrap();
    let new = ivy.creds().unwrap();
    assert_ne!(*old, *new);
    match vettid_client::vault::connect(&stack.nats, &old, &member).await {
        Err(ClientError::Nats(why)) => assert!(why.to_lowercase().contains("authoriz"), "{why}"),
        other => panic!("the replaced credentials still connect: {:?}", other.err()),
    }
    vettid_client::vault::connect(&stack.nats, &new, &member)
        .await
        .expect("the renewed credentials work");
}

/// The host's control socket (the debug path) cannot touch a vault an app owns: no reading,
/// no writing, no PIN guessing without a registered device.
#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_debug_path_cannot_reach_an_enrolled_vault() {
    use vettid_proto::enclave::{ToEnclave, VaultOp};
    let stack = UpStack::start();
    let mut hana = stack.enrolled("hana", "8642").await;
    let member = hana.member().unwrap().to_owned();
    let mut c = vettid_client::app::connect(&mut hana).await.unwrap();
    c.session
        .unchecked_call(AppOp::Unlock {
            pin: Zeroizing::new(b"8642".to_vec()),
        })
        .await
        .unwrap();
    let socket = stack.data().join("host.sock");
    let mut host = vettid_host::control::Client::connect(&socket).unwrap();
    for op in [
        VaultOp::Get { key: "x".into() },
        VaultOp::Put {
            key: "x".into(),
            value: b"planted".to_vec(),
        },
        VaultOp::Unlock {
            pin: b"0000".to_vec(),
        },
        VaultOp::Status,
        VaultOp::Lock,
    ] {
        let r = host
            .call(&ToEnclave::Vault {
                vault: member.clone(),
                op: op.clone(),
            })
            .unwrap();
        assert!(matches!(&r, Err(VaultError::AppOwned)), "{op:?}: {r:?}");
    }
    // The wrong PIN above was not counted, and the vault is still unlocked.
    match c.session.unchecked_call(AppOp::Status).await.unwrap() {
        AppReply::Status {
            unlocked,
            attempts_left,
            ..
        } => assert!(unlocked && attempts_left == 10),
        other => panic!("{other:?}"),
    }
    // A vault nobody enrolled is still the debug path's (development builds only).
    let r = host
        .call(&ToEnclave::Vault {
            vault: "scratch".into(),
            op: VaultOp::Create {
                pin: b"1357".to_vec(),
            },
        })
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
}

mod secrets {
    use super::*;
    use std::collections::BTreeMap;
    use vettid_proto::secrets::{CustomField, ItemContent, Secret, SecretData};

    fn login(name: &str, password: &str) -> ItemContent {
        ItemContent {
            name: name.into(),
            folder: Some("web".into()),
            tags: vec!["work".into()],
            data: SecretData::Login {
                username: "ada".into(),
                password: Secret::new(password),
                url: "https://example.org".into(),
                // RFC 6238's test secret.
                totp: Some(Secret::new("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")),
            },
            fields: vec![CustomField {
                name: "pin hint".into(),
                value: Secret::new("marker-field-51a9"),
                hidden: true,
            }],
        }
    }

    fn note(name: &str, text: &str) -> ItemContent {
        ItemContent {
            name: name.into(),
            folder: None,
            tags: vec![],
            data: SecretData::Note {
                text: Secret::new(text),
            },
            fields: vec![],
        }
    }

    async fn unlocked(
        stack: &UpStack,
        name: &str,
    ) -> vettid_client::vault::Unlocked<vettid_client::profile::Profile> {
        stack.unlocked(name, "5151").await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn items_keep_versions_tombstones_and_restores() {
        let stack = UpStack::start();
        let mut c = unlocked(&stack, "iris").await;
        let s = &mut c;
        let (item, v1) = s
            .create_secret(login("Bank", "marker-password-77c3"))
            .await
            .unwrap();
        // The SDK checked the change's signed version and recorded it in the profile.
        assert_eq!(s.seen().state.highest_version, v1.version);
        assert_eq!(
            (item.version, item.kind.as_str(), item.deleted),
            (1, "login", false)
        );
        let id = item.id;
        let (item, _) = s
            .update_secret(id, Some(1), login("Bank", "marker-password-2"))
            .await
            .unwrap();
        assert_eq!(item.version, 2);
        // A stale edit is refused, and changes nothing.
        let r = s.update_secret(id, Some(1), login("Bank", "lost")).await;
        assert!(
            matches!(
                r,
                Err(ClientError::Vault(VaultError::Secrets(
                    SecretError::VersionMismatch {
                        expected: 1,
                        actual: 2
                    }
                )))
            ),
            "{r:?}"
        );
        assert_eq!(
            s.secret_versions(id)
                .await
                .unwrap()
                .iter()
                .map(|v| v.0)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        let old = s.get_secret(id, Some(1)).await.unwrap();
        assert_eq!(old.content, login("Bank", "marker-password-77c3"));
        assert_eq!(s.get_secret(id, None).await.unwrap().version, 2);
        // TOTP computed in the vault: six digits.
        let (code, valid_for) = s.totp(id).await.unwrap();
        assert!(
            code.len() == 6
                && code.bytes().all(|b| b.is_ascii_digit())
                && (1..=30).contains(&valid_for)
        );
        // Search by name, tag and folder; notes have no TOTP.
        let (n, _) = s
            .create_secret(note("Diary", "marker-note-9d2e"))
            .await
            .unwrap();
        assert!(matches!(
            s.totp(n.id).await,
            Err(ClientError::Vault(VaultError::Secrets(SecretError::NoTotp)))
        ));
        let names = |v: Vec<vettid_proto::secrets::ItemSummary>| {
            v.into_iter().map(|i| i.name).collect::<Vec<_>>()
        };
        assert_eq!(
            names(
                s.list_secrets(Some("ban".into()), None, None, false)
                    .await
                    .unwrap()
            ),
            ["Bank"]
        );
        assert_eq!(
            names(
                s.list_secrets(None, Some("work".into()), None, false)
                    .await
                    .unwrap()
            ),
            ["Bank"]
        );
        assert_eq!(
            names(
                s.list_secrets(None, None, Some("web".into()), false)
                    .await
                    .unwrap()
            ),
            ["Bank"]
        );
        assert_eq!(
            s.list_secrets(None, None, None, false).await.unwrap().len(),
            2
        );
        // Delete: a tombstone, listed only on request; reading it is NotFound; old versions stay.
        let (gone, _) = s.delete_secret(id).await.unwrap();
        assert!(gone.deleted);
        assert!(matches!(
            s.get_secret(id, None).await,
            Err(ClientError::Vault(VaultError::NotFound))
        ));
        assert!(matches!(
            s.delete_secret(id).await,
            Err(ClientError::Vault(VaultError::NotFound))
        ));
        assert_eq!(
            s.list_secrets(None, None, None, false).await.unwrap().len(),
            1
        );
        assert_eq!(
            s.list_secrets(None, None, None, true).await.unwrap().len(),
            2
        );
        // Restore version 1: a new version 3 with version 1's content, alive again.
        let (back, _) = s.restore_secret(id, 1).await.unwrap();
        assert_eq!((back.version, back.deleted), (3, false));
        assert_eq!(
            s.get_secret(id, None).await.unwrap().content,
            login("Bank", "marker-password-77c3")
        );
        // Bad input: refused with a typed error, and nothing changes.
        let before = s.sync_secrets(0).await.unwrap();
        for bad in [
            note("", "x"),
            note(&"n".repeat(300), "x"),
            note("big", &"x".repeat(20_000)),
        ] {
            let r = s.create_secret(bad).await;
            assert!(
                matches!(
                    r,
                    Err(ClientError::Vault(VaultError::Secrets(
                        SecretError::Name | SecretError::Value
                    )))
                ),
                "{r:?}"
            );
        }
        assert!(matches!(
            s.get_secret([9; 16], None).await,
            Err(ClientError::Vault(VaultError::NotFound))
        ));
        assert!(matches!(
            s.restore_secret(id, 99).await,
            Err(ClientError::Vault(VaultError::NotFound))
        ));
        assert!(matches!(
            s.sync_secrets(1_000_000).await,
            Err(ClientError::Vault(VaultError::Secrets(
                SecretError::SinceAhead {
                    since: 1_000_000,
                    ..
                }
            )))
        ));
        assert_eq!(s.sync_secrets(0).await.unwrap(), before);
        // Another session of the same device, without the PIN: no access to the data.
        let mut other = vettid_client::app::connect(s.seen()).await.unwrap();
        let r = other
            .session
            .unchecked_call(AppOp::Secrets(vettid_proto::secrets::SecretOp::List {
                after: None,
                name: None,
                tag: None,
                folder: None,
                deleted: false,
            }))
            .await;
        assert!(
            matches!(r, Err(ClientError::Vault(VaultError::NotUnlocked))),
            "{r:?}"
        );
        // Zero knowledge: no marker anywhere in the operator's data (objects, JetStream, logs).
        drop((c, other));
        stack_files_containing(
            &stack.data(),
            &[
                b"marker-password-77c3",
                b"marker-note-9d2e",
                b"marker-field-51a9",
                b"Diary",
            ],
        );
    }

    /// Property: for a random history of creates, updates, deletes and restores, a replica at
    /// any vault version N plus `sync(N)` equals the vault's current items.
    #[tokio::test(flavor = "multi_thread")]
    async fn delta_sync_from_any_version_reproduces_the_current_state() {
        let stack = UpStack::start();
        let mut c = unlocked(&stack, "jules").await;
        let s = &mut c;
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut ids: Vec<vettid_proto::secrets::ItemId> = Vec::new();
        // (vault version, full replica at that version)
        let mut history: Vec<(u64, BTreeMap<_, _>)> = Vec::new();
        let snapshot = |changes| {
            let mut r = BTreeMap::new();
            vettid_client::secrets::apply(&mut r, changes);
            r
        };
        let (c0, v0) = s.sync_secrets(0).await.unwrap();
        history.push((v0, snapshot(c0)));
        for step in 0..60 {
            let r = match (next(4), ids.is_empty()) {
                (0, _) | (_, true) => s
                    .create_secret(note(&format!("n{step}"), &format!("v{step}")))
                    .await
                    .map(|(i, _)| ids.push(i.id)),
                (1, false) => {
                    let id = ids[next(ids.len() as u64) as usize];
                    s.update_secret(id, None, note(&format!("u{step}"), "x"))
                        .await
                        .map(|_| ())
                }
                (2, false) => s
                    .delete_secret(ids[next(ids.len() as u64) as usize])
                    .await
                    .map(|_| ()),
                _ => s
                    .restore_secret(ids[next(ids.len() as u64) as usize], 1)
                    .await
                    .map(|_| ()),
            };
            // Deleting a tombstone or updating one is refused: part of the history too.
            if let Err(e) = r {
                assert!(
                    matches!(
                        e,
                        ClientError::Vault(
                            VaultError::NotFound | VaultError::Secrets(SecretError::Deleted)
                        )
                    ),
                    "{e:?}"
                );
            }
            let (all, v) = s.sync_secrets(0).await.unwrap();
            history.push((v, snapshot(all)));
        }
        let current = history.last().unwrap().1.clone();
        assert!(current.len() > 5, "the history made items");
        for (n, at_n) in &history {
            let (changes, upto) = s.sync_secrets(*n).await.unwrap();
            assert_eq!(upto, history.last().unwrap().0);
            let mut replica = at_n.clone();
            vettid_client::secrets::apply(&mut replica, changes);
            assert_eq!(replica, current, "sync from version {n}");
        }
    }
}

/// `vettid app backup …`: the vault backs itself up through the host, lists, verifies in the
/// enclave; a backup the operator altered is refused; nothing in it is readable outside.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_command_backs_up_and_a_tampered_backup_is_refused() {
    let stack = UpStack::start();
    let mut profile = stack.enrolled("bea", "2580").await;
    let member = profile.member().unwrap().to_owned();
    {
        let c = vettid_client::app::connect(&mut profile).await.unwrap();
        let mut s = c
            .session
            .unlock(Zeroizing::new(b"2580".to_vec()), &mut profile)
            .await
            .unwrap();
        s.create_secret(vettid_proto::secrets::ItemContent {
            name: "in the backup".into(),
            folder: None,
            tags: vec![],
            data: vettid_proto::secrets::SecretData::Note {
                text: vettid_proto::secrets::Secret::new("marker-backup-e2e-71f0"),
            },
            fields: vec![],
        })
        .await
        .unwrap();
    }
    let dir = profile.dir().to_path_buf();
    drop(profile);
    let p = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let all: Vec<&str> = ["app", "--profile", p, "backup", "--pin-env", "BEA_PIN"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        vettid_with(&all, &[("BEA_PIN", "2580")])
    };
    let (ok, out) = run(&["status"]);
    assert!(ok && out.contains("no backup yet"), "{out}");
    let (ok, out) = run(&["schedule", "--every", "daily", "--keep", "0"]);
    assert!(!ok && out.contains("keep 1 to 100 backups"), "{out}");
    let (ok, out) = run(&["schedule", "--every", "weekly", "--keep", "5"]);
    assert!(ok && out.contains("Weekly, keeping 5"), "{out}");
    let (ok, out) = run(&["now"]);
    assert!(ok && out.contains("✓ backup #1"), "{out}");
    assert!(out.contains("wrapped under the recovery phrase"), "{out}");
    let (ok, out) = run(&["now"]);
    assert!(ok && out.contains("✓ backup #2"), "{out}");
    let (ok, out) = run(&["list"]);
    assert!(ok && out.contains("2 backup(s)"), "{out}");
    let (ok, out) = run(&["verify"]);
    assert!(ok && out.contains("#2") && out.contains("opens"), "{out}");
    let (ok, out) = run(&["status"]);
    assert!(
        ok && out.contains("verified   #2") && out.contains("next due"),
        "{out}"
    );
    // The operator alters a byte of backup 1 where it stores it.
    let chunks: Vec<std::path::PathBuf> = walk(&stack.data())
        .into_iter()
        .filter(|f| {
            let f = f.to_string_lossy();
            f.contains(&format!("vaults/{member}/backupc/"))
                && f.ends_with(&format!("{:020}", 1u64 << 24))
        })
        .collect();
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    let mut bytes = std::fs::read(&chunks[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&chunks[0], bytes).unwrap();
    let (ok, out) = run(&["verify", "1"]);
    assert!(
        !ok && out.contains("chunk 0 of the backup does not authenticate"),
        "{out}"
    );
    let (ok, out) = run(&["verify", "2"]);
    assert!(ok, "the other backup is untouched: {out}");
    stack_files_containing(
        &stack.data(),
        &[b"marker-backup-e2e-71f0", b"in the backup"],
    );
}

/// `vettid app devices …`: the registered devices, this one marked; a rename; bad input refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_command_lists_and_renames_devices() {
    let stack = UpStack::start();
    let profile = stack.enrolled("dora", "8642").await;
    let dir = profile.dir().to_path_buf();
    drop(profile);
    let p = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let all: Vec<&str> = ["app", "--profile", p, "devices", "--pin-env", "DORA_PIN"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        vettid_with(&all, &[("DORA_PIN", "8642")])
    };
    let (ok, out) = run(&["list"]);
    assert!(
        ok && out.contains("(this device)") && out.contains("1 device(s)"),
        "{out}"
    );
    let key = out
        .split_whitespace()
        .find(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap()
        .to_owned();
    let (ok, out) = run(&["rename", &key, "dora's old phone"]);
    assert!(ok && out.contains("is now “dora's old phone”"), "{out}");
    let (ok, out) = run(&["list"]);
    assert!(ok && out.contains("dora's old phone"), "{out}");
    let (ok, out) = run(&["rename", "zz", "x"]);
    assert!(!ok && out.contains("64 hex digits"), "{out}");
    let (ok, out) = run(&["rename", &"0".repeat(64), "x"]);
    assert!(!ok && out.contains("no such device"), "{out}");
}

/// Every file below `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// `vettid app secrets …`, each command its own process (and its own unlocked session).
#[tokio::test(flavor = "multi_thread")]
async fn the_app_command_manages_secrets() {
    let stack = UpStack::start();
    let profile = stack.enrolled("kai", "9753").await;
    let dir = profile.dir().to_path_buf();
    drop(profile);
    let p = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let all: Vec<&str> = ["app", "--profile", p, "secrets", "--pin-env", "KAI_PIN"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        vettid_with(
            &all,
            &[
                ("KAI_PIN", "9753"),
                ("KAI_PW", "s3cret-pw"),
                ("KAI_TOTP", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            ],
        )
    };
    let (ok, out) = run(&[
        "add",
        "--name",
        "Bank",
        "--login",
        "ada",
        "--secret-env",
        "KAI_PW",
        "--totp-env",
        "KAI_TOTP",
        "--tag",
        "money",
    ]);
    assert!(ok && out.contains("✓ added"), "{out}");
    let id = out
        .split_whitespace()
        .find(|w| w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap()
        .to_owned();
    let (ok, out) = run(&["get", &id]);
    assert!(
        ok && out.contains("ada") && !out.contains("s3cret-pw"),
        "{out}"
    );
    let (ok, out) = run(&["get", &id, "--reveal"]);
    assert!(ok && out.contains("s3cret-pw"), "{out}");
    let (ok, out) = run(&["totp", &id]);
    assert!(ok && out.contains("valid"), "{out}");
    let (ok, out) = run(&["list", "--tag", "money"]);
    assert!(
        ok && out.contains("Bank") && out.contains("1 item(s)"),
        "{out}"
    );
    let (ok, out) = run(&["folders"]);
    assert!(
        ok && out.contains("     1  (no folder)") && out.contains("1 folder(s)"),
        "{out}"
    );
    let (ok, out) = run(&["delete", &id]);
    assert!(ok && out.contains("deleted"), "{out}");
    let (ok, out) = run(&["restore", &id, "1"]);
    assert!(ok && out.contains("restored as version 2"), "{out}");
    let (ok, out) = run(&["sync", "--since", "0"]);
    assert!(
        ok && out.contains("upsert") && out.contains("1 change(s)"),
        "{out}"
    );
    let (ok, out) = run(&["get", "not-hex"]);
    assert!(!ok && out.contains("32 hex digits"), "{out}");
}

mod credential {
    use super::*;
    use vettid_proto::credential::{CredentialOp, CredentialResult, CriticalKind};
    use vettid_proto::secrets::Secret;

    const PASSWORD: &[u8] = b"a long test password"; // what `UpStack::enrolled` uses

    async fn unlocked(
        stack: &UpStack,
        name: &str,
    ) -> vettid_client::vault::Unlocked<vettid_client::profile::Profile> {
        stack.unlocked(name, "2580").await
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn critical_secrets_rotate_the_key_on_every_use() {
        let stack = UpStack::start();
        let mut c = unlocked(&stack, "lena").await;
        let s = &mut c;
        let add = CredentialOp::Add {
            kind: CriticalKind::SeedPhrase,
            label: "cold wallet".into(),
            value: Secret::new("marker-seed-4f1c abandon abandon about"),
        };
        let CredentialResult::Added(meta) = s.credential(PASSWORD, add).await.unwrap() else {
            panic!("not added");
        };
        // Listing shows metadata only.
        let CredentialResult::Listed(list) =
            s.credential(PASSWORD, CredentialOp::List).await.unwrap()
        else {
            panic!();
        };
        assert_eq!(list, std::slice::from_ref(&meta));
        // The blob just used is dead after its next use: keep a copy, use the current one once,
        // then the copy is refused.
        let old = s
            .seen()
            .read(vettid_client::credential::BLOB)
            .unwrap()
            .to_vec();
        let CredentialResult::Value { value, .. } = s
            .credential(PASSWORD, CredentialOp::Get { id: meta.id })
            .await
            .unwrap()
        else {
            panic!();
        };
        assert_eq!(value.expose(), "marker-seed-4f1c abandon abandon about");
        let current = s
            .seen()
            .read(vettid_client::credential::BLOB)
            .unwrap()
            .to_vec();
        assert_ne!(old, current, "every use re-seals the credential");
        s.seen()
            .write_secret(vettid_client::credential::BLOB, &old)
            .unwrap();
        let r = s.credential(PASSWORD, CredentialOp::List).await;
        assert!(
            matches!(&r, Err(ClientError::Vault(VaultError::StaleCredential))),
            "{r:?}"
        );
        s.seen()
            .write_secret(vettid_client::credential::BLOB, &current)
            .unwrap();
        // Bad input changes nothing.
        let r = s
            .credential(
                PASSWORD,
                CredentialOp::Add {
                    kind: CriticalKind::Other,
                    label: String::new(),
                    value: Secret::new("x"),
                },
            )
            .await;
        assert!(
            matches!(
                r,
                Err(ClientError::Vault(VaultError::Credential(
                    CredentialError::SecretSize
                )))
            ),
            "{r:?}"
        );
        assert!(matches!(
            s.credential(PASSWORD, CredentialOp::Get { id: [0; 16] })
                .await,
            Err(ClientError::Vault(VaultError::NotFound))
        ));
        // Password change: the old password no longer opens it.
        s.change_password(PASSWORD, b"the new password")
            .await
            .unwrap();
        let r = s.credential(PASSWORD, CredentialOp::List).await;
        assert!(
            matches!(r, Err(ClientError::Vault(VaultError::WrongPassword { .. }))),
            "{r:?}"
        );
        let CredentialResult::Deleted = s
            .credential(b"the new password", CredentialOp::Delete { id: meta.id })
            .await
            .unwrap()
        else {
            panic!();
        };
        // Without the PIN in this session: no credential operations.
        let mut other = vettid_client::app::connect(s.seen()).await.unwrap();
        let blob = s
            .seen()
            .read(vettid_client::credential::BLOB)
            .unwrap()
            .to_vec();
        let r = other
            .session
            .unchecked_call(AppOp::Credential {
                blob,
                verifier: Zeroizing::new(vettid_client::password_verifier(
                    "lena",
                    b"the new password",
                )),
                op: CredentialOp::List,
                request: [1; 16],
            })
            .await;
        assert!(
            matches!(r, Err(ClientError::Vault(VaultError::NotUnlocked))),
            "{r:?}"
        );
        drop((c, other));
        stack_files_containing(&stack.data(), &[b"marker-seed-4f1c"]);
    }

    /// Wrong passwords are counted with the PIN's durable limit: at ten the vault locks and the
    /// right PIN no longer opens it.
    #[tokio::test(flavor = "multi_thread")]
    async fn wrong_passwords_are_counted_and_lock_the_vault() {
        let stack = UpStack::start();
        let mut c = unlocked(&stack, "milo").await;
        let s = &mut c;
        for left in (1..10).rev() {
            let r = s.credential(b"wrong", CredentialOp::List).await;
            assert!(
                matches!(r, Err(ClientError::Vault(VaultError::WrongPassword { attempts_left })) if attempts_left == left),
                "{r:?}"
            );
        }
        // A right password resets the count.
        s.credential(PASSWORD, CredentialOp::List).await.unwrap();
        for left in (1..10).rev() {
            let r = s.credential(b"wrong", CredentialOp::List).await;
            assert!(
                matches!(r, Err(ClientError::Vault(VaultError::WrongPassword { attempts_left })) if attempts_left == left),
                "{r:?}"
            );
        }
        let r = s.credential(b"wrong", CredentialOp::List).await;
        assert!(
            matches!(r, Err(ClientError::Vault(VaultError::LockedOut))),
            "{r:?}"
        );
        // The vault closed, and the right PIN no longer opens it (recovery only).
        let other = vettid_client::app::connect(s.seen()).await.unwrap();
        let r = other
            .session
            .unlock(Zeroizing::new(b"2580".to_vec()), s.seen())
            .await
            .map(|_| ());
        assert!(
            matches!(r, Err(ClientError::Vault(VaultError::LockedOut))),
            "{r:?}"
        );
    }
}

/// `vettid app credential …`: add, list, get, change the password, each its own process.
#[tokio::test(flavor = "multi_thread")]
async fn the_app_command_uses_the_credential() {
    let stack = UpStack::start();
    let profile = stack.enrolled("nico", "1470").await;
    let dir = profile.dir().to_path_buf();
    drop(profile);
    let p = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let all: Vec<&str> = [
            "app",
            "--profile",
            p,
            "credential",
            "--pin-env",
            "NICO_PIN",
            "--password-env",
            "NICO_PW",
        ]
        .iter()
        .chain(args)
        .copied()
        .collect();
        vettid_with(
            &all,
            &[
                ("NICO_PIN", "1470"),
                ("NICO_PW", "a long test password"),
                ("NICO_NEW_PW", "another long password"),
                ("NICO_SEED", "legal winner thank year wave sausage"),
            ],
        )
    };
    let (ok, out) = run(&[
        "add",
        "--kind",
        "seed-phrase",
        "--label",
        "wallet",
        "--value-env",
        "NICO_SEED",
    ]);
    assert!(ok && out.contains("✓ added"), "{out}");
    let id = out
        .split_whitespace()
        .find(|w| w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap()
        .to_owned();
    let (ok, out) = run(&["list"]);
    assert!(
        ok && out.contains("seed-phrase") && !out.contains("sausage"),
        "{out}"
    );
    let (ok, out) = run(&["get", &id]);
    assert!(
        ok && out.contains("legal winner thank year wave sausage"),
        "{out}"
    );
    let (ok, out) = run(&["change-password", "--new-password-env", "NICO_NEW_PW"]);
    assert!(ok && out.contains("password changed"), "{out}");
    let (ok, out) = run(&["list"]);
    assert!(
        !ok && out.contains("wrong password"),
        "the old password is refused: {out}"
    );
}

mod feed {
    use super::*;
    use vettid_proto::feed::{ExportFormat, FeedOp, FeedReply, verify_chain};
    use vettid_proto::secrets::{ItemContent, Secret, SecretData};

    fn note(name: &str) -> ItemContent {
        ItemContent {
            name: name.into(),
            folder: None,
            tags: vec![],
            data: SecretData::Note {
                text: Secret::new("x"),
            },
            fields: vec![],
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_feed_and_audit_chain_record_what_happened_and_verify() {
        let stack = UpStack::start();
        let mut profile = stack.enrolled("olga", "3690").await;
        let c = vettid_client::app::connect(&mut profile).await.unwrap();
        let s = &mut c
            .session
            .unlock(Zeroizing::new(b"3690".to_vec()), &mut profile)
            .await
            .unwrap();
        let (item, _) = s.create_secret(note("a")).await.unwrap();
        s.update_secret(item.id, None, note("b")).await.unwrap();
        s.delete_secret(item.id).await.unwrap();
        // The whole chain verifies and holds the unlock (feed) and the three changes (audit).
        let (events, head) = s.sync_events(0, [0; 32]).await.unwrap();
        let kinds: Vec<String> = events
            .iter()
            .map(|e| e.content.as_ref().unwrap().kind.clone())
            .collect();
        assert_eq!(
            kinds,
            [
                "vault.unlocked",
                "secrets.created",
                "secrets.updated",
                "secrets.deleted"
            ]
        );
        // Sync from the middle continues the chain.
        let (rest, head2) = s.sync_events(2, events[1].hash).await.unwrap();
        assert_eq!((rest.len(), head2), (2, head));
        // A client checking against a wrong predecessor notices.
        assert!(matches!(
            s.sync_events(2, [7; 32]).await,
            Err(ClientError::Protocol(_))
        ));
        // The feed shows only what is for the member; read, archive, delete.
        let feed = s.feed_items(0, false).await.unwrap();
        assert_eq!(feed.len(), 1);
        let seq = feed[0].seq;
        assert!(!feed[0].read);
        s.run(FeedOp::Read { seq }).await.unwrap();
        assert!(s.feed_items(0, false).await.unwrap()[0].read);
        s.run(FeedOp::Archive { seq }).await.unwrap();
        assert!(s.feed_items(0, false).await.unwrap().is_empty());
        assert_eq!(s.feed_items(0, true).await.unwrap().len(), 1);
        s.run(FeedOp::Delete { seq }).await.unwrap();
        assert!(s.feed_items(0, true).await.unwrap().is_empty());
        // Deleted content leaves the chain verifiable.
        let (after, head3) = s.sync_events(0, [0; 32]).await.unwrap();
        assert!(after[0].content.is_none());
        assert!(verify_chain(0, [0; 32], &after).is_ok());
        assert_ne!(head3, [0; 32]);
        // Audit queries and exports.
        let FeedReply::Events { events, .. } = s
            .run(FeedOp::Query {
                after: 0,
                from_ms: 0,
                to_ms: u64::MAX >> 1,
                kind: Some("secrets.".into()),
            })
            .await
            .unwrap()
        else {
            panic!();
        };
        assert_eq!(events.len(), 3);
        let json = s.export_audit(ExportFormat::Json).await.unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 3, "{json}");
        let csv = s.export_audit(ExportFormat::Csv).await.unwrap();
        assert!(
            csv.starts_with("seq,at_ms,kind") && csv.lines().count() == 4,
            "{csv}"
        );
        // Bad input: typed errors, nothing changed.
        for op in [
            FeedOp::Read { seq: 999 },
            FeedOp::Archive { seq: 2 },
            FeedOp::Delete { seq: 0 },
        ] {
            let r = s.run(op).await;
            assert!(
                matches!(r, Err(ClientError::Vault(VaultError::NotFound))),
                "{r:?}"
            );
        }
        let r = s
            .run(FeedOp::Query {
                after: 0,
                from_ms: 10,
                to_ms: 5,
                kind: None,
            })
            .await;
        assert!(
            matches!(
                r,
                Err(ClientError::Vault(VaultError::Feed(FeedError::TimeRange)))
            ),
            "{r:?}"
        );
        assert_eq!(s.sync_events(0, [0; 32]).await.unwrap().1, head3);
        // Another session without the PIN sees nothing.
        let mut other = vettid_client::app::connect(s.seen()).await.unwrap();
        assert!(matches!(
            other
                .session
                .unchecked_call(AppOp::Feed(FeedOp::List {
                    after: 0,
                    archived: true
                }))
                .await,
            Err(ClientError::Vault(VaultError::NotUnlocked))
        ));
    }

    /// `vettid app feed …`.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_app_command_shows_and_verifies_the_feed() {
        let stack = UpStack::start();
        let profile = stack.enrolled("pia", "8520").await;
        let dir = profile.dir().to_path_buf();
        drop(profile);
        let p = dir.to_str().unwrap();
        let run = |args: &[&str]| {
            let all: Vec<&str> = ["app", "--profile", p, "feed", "--pin-env", "PIA_PIN"]
                .iter()
                .chain(args)
                .copied()
                .collect();
            vettid_with(&all, &[("PIA_PIN", "8520")])
        };
        let (ok, out) = run(&["list"]);
        assert!(ok && out.contains("vault.unlocked"), "{out}");
        let (ok, out) = run(&["verify"]);
        assert!(ok && out.contains("verifies"), "{out}");
        let (ok, out) = run(&["export", "--format", "csv"]);
        assert!(ok && out.starts_with("seq,at_ms,kind"), "{out}");
    }
}

/// Issue 11, finding 4: one member sends 200 requests at once; the host handles a few of them
/// at a time and answers the rest "busy" at once, and another member is served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn one_member_cannot_take_the_host_from_the_others() {
    let stack = UpStack::start();
    let alice = stack.enrolled("alice", "1111").await;
    let bob = stack.enrolled("bob", "2222").await;
    let connect = |p: &vettid_client::profile::Profile| {
        let member = p.member().unwrap().to_owned();
        let creds = p.creds().unwrap();
        let url = stack.nats.clone();
        async move {
            vettid_client::vault::connect(&url, &creds, &member)
                .await
                .unwrap()
        }
    };
    let (a, b) = (connect(&alice).await, connect(&bob).await);
    let attest = |n: u8| postcard::to_allocvec(&FromApp::Attest { nonce: [n; 32] }).unwrap();
    let flood =
        futures::future::join_all((0..200u8).map(|i| raw(&a, Channel::Attestation, attest(i))));
    let (answers, bobs) = tokio::join!(flood, raw(&b, Channel::Attestation, attest(7)));
    let busy = answers
        .iter()
        .filter(|a| matches!(a, ToApp::Refused(SessionError::Busy)))
        .count();
    let served = answers
        .iter()
        .filter(|a| matches!(a, ToApp::Attestation { .. }))
        .count();
    assert!(busy > 0, "no request was refused as busy ({served} served)");
    assert_eq!(busy + served, 200, "every request got a typed answer");
    assert!(
        matches!(bobs, ToApp::Attestation { .. }),
        "the other member was served: {bobs:?}"
    );
}

/// Staged recovery against the real stack (its delay set to 0 here; the delay itself and
/// expiry are tested with a moved clock in the API's tests, the enclave's own delay in its
/// unit tests): an enrolled device sees and cancels a request; a vault locked by ten wrong
/// PINs does not reopen with the PIN on a new device, only with the phrase; the lost device
/// is shut out at once; the data is all there; the phrase is nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_device_is_replaced_by_staged_recovery_and_a_locked_vault_reopens_with_the_phrase() {
    use vettid_client::api::QrPayload;
    use vettid_client::app::{Proof, RecoverInput};
    let stack = UpStack::start_with(&["--recovery-delay-secs", "0"]);
    let api = Api::new(&stack.api);
    let pin = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
    let (member, web) = stack.member("lena").await;
    let enrollment = stack.enrollment_session(&web).await;
    let mut old = stack.profile("lena");
    let pending = stack
        .begin_confirmed("lena", &mut old, &web, enrollment)
        .await;
    let mut shown = None;
    vettid_client::app::finish(
        &mut old,
        &api,
        pending,
        stack.enroll_input("1357"),
        |_, _| {},
        |p| shown = Some(p),
    )
    .await
    .unwrap();
    let phrase = shown.unwrap();
    let mark = vettid_client::vault::Mark::new(&member, old.state.identity().unwrap());
    let c = vettid_client::app::connect(&mut old).await.unwrap();
    let mut kept = c.session.unlock(pin("1357"), mark).await.unwrap();
    kept.create_secret(support::adversary::note("kept-by-lena-7d3e"))
        .await
        .unwrap();
    let web_call = |method: &'static str, path: &'static str| {
        vettid_client::http::json(&stack.api, method, path, Some(&web), None)
    };

    // The enrolled device is told of a request and cancels it ("not me").
    let r = web_call("POST", "/v1/recovery").await.unwrap();
    assert_eq!(r["stage"], "ready", "{r}");
    let old_dir = old.dir().to_path_buf();
    drop(old); // (the command takes the profile's lock)
    let p = old_dir.to_str().unwrap();
    let (ok, out) = vettid(&["app", "--profile", p, "recovery", "status"]);
    assert!(ok && out.contains("can complete now"), "{out}");
    let (ok, out) = vettid(&["app", "--profile", p, "recovery", "cancel"]);
    assert!(ok && out.contains("cancelled"), "{out}");
    let r = web_call("GET", "/v1/recovery").await.unwrap();
    assert_eq!(r["cancel_reason"], "cancelled_on_device", "{r}");
    let (ok, out) = vettid(&["app", "--profile", p, "recovery", "cancel"]);
    assert!(!ok && out.contains("nothing to cancel"), "{out}");
    let mut old = vettid_client::profile::Profile::open_enrolled(&old_dir).unwrap();

    // Ten wrong PINs lock the vault.
    let mut last = None;
    for _ in 0..10 {
        let c = vettid_client::app::connect(&mut old).await.unwrap();
        last = c.session.unlock(pin("0000"), &mut old).await.err();
    }
    assert!(
        matches!(last, Some(ClientError::Vault(VaultError::LockedOut))),
        "{last:?}"
    );

    // A new device with the PIN: refused, the vault stays locked.
    web_call("POST", "/v1/recovery").await.unwrap();
    let qr = web_call("POST", "/v1/recovery/qr").await.unwrap();
    let payload = QrPayload::parse_recovery(qr["qr_text"].as_str().unwrap()).unwrap();
    assert!(QrPayload::parse(qr["qr_text"].as_str().unwrap()).is_err());
    let mut new = stack.profile("lena-new");
    let pending = vettid_client::app::begin(&mut new, &api, &payload.into(), "lena-laptop")
        .await
        .unwrap();
    stack
        .confirm(
            &web,
            qr["session_id"].as_str().unwrap(),
            pending.comparison_code(),
        )
        .await
        .unwrap();
    let input = RecoverInput {
        proof: Proof::Pin(pin("1357")),
        password: pin("a new long password"),
        nats_url: Some(stack.nats.clone()),
    };
    let r = vettid_client::app::recover(&mut new, &api, pending, input, |_, _| {}).await;
    assert!(
        matches!(r, Err(ClientError::Vault(VaultError::LockedOut))),
        "{r:?}"
    );

    // With the phrase, through the command, on another new device.
    let qr = web_call("POST", "/v1/recovery/qr").await.unwrap();
    let dir = stack.dir.path().join("profiles/lena-cli");
    let data = stack.data();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vettid"))
        .args(["app", "--profile", dir.to_str().unwrap(), "recover"])
        .args([
            "--qr-env",
            "QR",
            "--phrase-env",
            "PHRASE",
            "--pin-env",
            "PIN",
        ])
        .args([
            "--password-env",
            "PASSWORD",
            "--trust",
            data.to_str().unwrap(),
        ])
        .args(["--nats-url", &stack.nats, "--device-name", "lena-cli"])
        .env("QR", qr["qr_text"].as_str().unwrap())
        .env("PHRASE", phrase.words())
        .env("PIN", "2468")
        .env("PASSWORD", "a new long password")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let code = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.trim()
                .strip_prefix("comparison code:")
                .map(|c| c.trim().to_owned())
        })
        .expect("the command shows a comparison code");
    stack
        .confirm(&web, qr["session_id"].as_str().unwrap(), &code)
        .await
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let out = rest.join("\n");
    assert!(
        status.success() && out.contains("1 other device(s) removed"),
        "{out}"
    );

    // The lost device is shut out: its NATS credentials are revoked (and the enclave no
    // longer knows it, which ends its open sessions at once:
    // `session::tests::a_removed_device_loses_its_open_session`).
    drop(kept);
    let r = vettid_client::app::connect(&mut old).await.map(|_| ());
    assert!(matches!(r, Err(ClientError::Nats(_))), "{r:?}");

    // The new device has the vault, under the new PIN, with everything in it.
    let mut recovered = vettid_client::profile::Profile::open_enrolled(&dir).unwrap();
    let c = vettid_client::app::connect(&mut recovered).await.unwrap();
    let mut s = c.session.unlock(pin("2468"), &mut recovered).await.unwrap();
    let items = s.list_secrets(None, None, None, false).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["kept-by-lena-7d3e"]
    );
    let web_state = web_call("GET", "/v1/recovery").await.unwrap();
    assert_eq!(web_state["stage"], "completed", "{web_state}");
    let words = phrase.words().to_owned();
    stack_files_containing(&stack.data(), &[words.as_bytes()]);
}

/// Vault deletion, end to end: requested and confirmed on the web, the hosts shred the vault
/// in the enclave (keys records first, backups included), the old device is shut out, and the
/// member enrolls again into a new, empty vault — also how a member takes back an account
/// whose enrollment code someone else used first. A hostile operator who kept the old backup
/// objects and puts them back cannot have them opened: the old keys are gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_vault_is_shredded_old_backups_no_longer_open_and_the_members_export_restores_into_a_new_vault()
 {
    let stack = UpStack::start_with(&["--deletion-delay-secs", "0"]);
    let api = Api::new(&stack.api);
    let pin = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
    let (member, web) = stack.member("dora").await;
    let enrollment = stack.enrollment_session(&web).await;
    let mut old = stack.profile("dora");
    let pending = stack
        .begin_confirmed("dora", &mut old, &web, enrollment)
        .await;
    let mut shown = None;
    vettid_client::app::finish(
        &mut old,
        &api,
        pending,
        stack.enroll_input("1357"),
        |_, _| {},
        |p| shown = Some(p),
    )
    .await
    .unwrap();
    let phrase = shown.unwrap();
    let mark = vettid_client::vault::Mark::new(&member, old.state.identity().unwrap());
    let c = vettid_client::app::connect(&mut old).await.unwrap();
    let mut s = c.session.unlock(pin("1357"), mark).await.unwrap();
    s.create_secret(support::adversary::note("shredded-note-51c0"))
        .await
        .unwrap();
    let backup = s.backup_now().await.unwrap();
    drop(s);

    // The member exports to their own file first (a new backup, through the command).
    let export = stack.dir.path().join("dora.vettid-export");
    let old_dir = old.dir().to_path_buf();
    drop(old);
    let profile = old_dir.to_str().unwrap();
    let file = export.to_str().unwrap();
    let pin_env = [("PIN", "1357")];
    let (ok, out) = vettid_with(
        &[
            "app",
            "--profile",
            profile,
            "export",
            "--out",
            file,
            "--pin-env",
            "PIN",
        ],
        &pin_env,
    );
    assert!(ok && out.contains("exported to"), "{out}");
    let (ok, out) = vettid_with(
        &[
            "app",
            "--profile",
            profile,
            "export",
            "--out",
            file,
            "--pin-env",
            "PIN",
        ],
        &pin_env,
    );
    assert!(!ok && out.contains("never overwritten"), "{out}");
    let mut old = vettid_client::profile::Profile::open_enrolled(&old_dir).unwrap();
    let c = vettid_client::app::connect(&mut old).await.unwrap();
    let s = c.session.unlock(pin("1357"), &mut old).await.unwrap();
    let vault_dir = stack.data().join("objects/vaults").join(&member);
    let kept = stack.dir.path().join("kept-by-the-operator");
    copy_tree(&vault_dir, &kept);
    let web_call = |method: &'static str, path: &'static str| {
        vettid_client::http::json(&stack.api, method, path, Some(&web), None)
    };

    // Requested, cancelled, requested again and confirmed.
    let r = web_call("POST", "/v1/vault/deletion").await.unwrap();
    assert_eq!(r["stage"], "ready", "{r}");
    let r = web_call("POST", "/v1/vault/deletion/cancel").await.unwrap();
    assert_eq!(r["stage"], "cancelled", "{r}");
    web_call("POST", "/v1/vault/deletion").await.unwrap();
    let r = web_call("POST", "/v1/vault/deletion/confirm")
        .await
        .unwrap();
    assert_eq!(r["stage"], "completed", "{r}");
    let left = walk(&vault_dir);
    assert!(left.is_empty(), "objects left after the shred: {left:?}");

    // The device is shut out (its NATS credentials are revoked; the enclave ended its
    // sessions: `manager::tests::a_shredded_vault_is_gone_and_its_sessions_end`).
    drop(s);
    let r = vettid_client::app::connect(&mut old).await.map(|_| ());
    assert!(matches!(r, Err(ClientError::Nats(_))), "{r:?}");

    // A new enrollment makes a new, empty vault.
    let enrollment = stack.enrollment_session(&web).await;
    let mut new = stack.profile("dora-again");
    let pending = stack
        .begin_confirmed("dora", &mut new, &web, enrollment)
        .await;
    vettid_client::app::finish(
        &mut new,
        &api,
        pending,
        stack.enroll_input("2468"),
        |_, _| {},
        |_| {},
    )
    .await
    .unwrap();
    let mark = vettid_client::vault::Mark::new(&member, new.state.identity().unwrap());
    let c = vettid_client::app::connect(&mut new).await.unwrap();
    let mut s = c.session.unlock(pin("2468"), mark).await.unwrap();
    assert!(
        s.list_secrets(None, None, None, false)
            .await
            .unwrap()
            .is_empty()
    );

    // The operator puts the old backup back: it does not open.
    for kind in ["backup", "backupc"] {
        copy_tree(&kept.join(kind), &vault_dir.join(kind));
    }
    let r = s.verify_backup(backup.id).await;
    assert!(
        matches!(
            r,
            Err(ClientError::Vault(VaultError::Backup(
                vettid_proto::backup::BackupError::NoSuchBackup
            )))
        ),
        "{r:?}"
    );
    let r = web_call("GET", "/v1/vault/deletion").await.unwrap();
    assert_eq!(r["stage"], "completed", "{r}");
    drop(s);

    // The member's own file restores with the old vault's phrase into the new vault; a file
    // cut short or altered is refused and restores nothing.
    let new_dir = new.dir().to_path_buf();
    drop(new);
    let profile = new_dir.to_str().unwrap();
    let bytes = std::fs::read(&export).unwrap();
    assert!(
        !bytes
            .windows(b"shredded-note-51c0".len())
            .any(|w| w == b"shredded-note-51c0"),
        "the export is sealed"
    );
    let restore = |path: &std::path::Path| {
        vettid_with(
            &[
                "app",
                "--profile",
                profile,
                "restore",
                "--from",
                path.to_str().unwrap(),
                "--phrase-env",
                "PHRASE",
                "--pin-env",
                "PIN",
            ],
            &[("PIN", "2468"), ("PHRASE", phrase.words())],
        )
    };
    let cut = stack.dir.path().join("cut.vettid-export");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let (ok, out) = restore(&cut);
    assert!(!ok && out.contains("ends in the middle"), "{out}");
    let altered = stack.dir.path().join("altered.vettid-export");
    let mut changed = bytes.clone();
    let at = changed.len() - 50;
    changed[at] ^= 1;
    std::fs::write(&altered, &changed).unwrap();
    let (ok, out) = restore(&altered);
    assert!(!ok && out.contains("does not authenticate"), "{out}");
    let (ok, out) = restore(&export);
    assert!(ok && out.contains("restored backup"), "{out}");
    let mut new = vettid_client::profile::Profile::open_enrolled(&new_dir).unwrap();
    let c = vettid_client::app::connect(&mut new).await.unwrap();
    let mut s = c.session.unlock(pin("2468"), &mut new).await.unwrap();
    let items = s.list_secrets(None, None, None, false).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["shredded-note-51c0"]
    );
    let words = phrase.words().to_owned();
    stack_files_containing(&stack.data(), &[words.as_bytes(), b"shredded-note-51c0"]);
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for file in walk(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

/// A second device joins with the first one's approval, through the commands: the new device
/// shows its keys, the first has the enclave add them (PIN) and shows a one-time invite, the
/// new device finishes with it and has the vault under its own keys and credentials; the
/// invite works once; the first device removes it (its credentials revoked), and the last
/// device cannot be removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_device_joins_with_the_first_ones_approval_and_is_removed() {
    let stack = UpStack::start();
    let pin = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
    let mut phone = stack.enrolled("bob", "2580").await;
    let c = vettid_client::app::connect(&mut phone).await.unwrap();
    let mut s = c.session.unlock(pin("2580"), &mut phone).await.unwrap();
    s.create_secret(support::adversary::note("bobs-note-9e1a"))
        .await
        .unwrap();
    drop(s);
    let phone_dir = phone.dir().to_path_buf();
    drop(phone);
    let phone_path = phone_dir.to_str().unwrap();
    let laptop_dir = stack.dir.path().join("profiles/bob-laptop");
    let laptop_path = laptop_dir.to_str().unwrap();
    let data = stack.data();
    let env = [("PIN", "2580")];
    let line_of = |out: &str, kind: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{{\"type\":\"{kind}\"")))
            .unwrap_or_else(|| panic!("no {kind} in {out}"))
            .to_owned()
    };

    let (ok, out) = vettid(&[
        "app",
        "--profile",
        laptop_path,
        "join",
        "request",
        "--api",
        &stack.api,
        "--device-name",
        "bob-laptop",
        "--trust",
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let request = line_of(&out, "vettid_join_request");
    let (ok, out) = vettid_with(
        &[
            "app",
            "--profile",
            phone_path,
            "devices",
            "--pin-env",
            "PIN",
            "add",
            "--request-env",
            "REQ",
        ],
        &[("PIN", "2580"), ("REQ", &request)],
    );
    assert!(ok && out.contains("bob-laptop added"), "{out}");
    let invite = line_of(&out, "vettid_join");
    let finish = |invite: &str| {
        vettid_with(
            &[
                "app",
                "--profile",
                laptop_path,
                "join",
                "finish",
                "--invite-env",
                "INVITE",
                "--pin-env",
                "PIN",
                "--nats-url",
                &stack.nats,
            ],
            &[("PIN", "2580"), ("INVITE", invite)],
        )
    };
    let (ok, out) = finish(&invite);
    assert!(ok && out.contains("joined"), "{out}");

    // The laptop has the vault under its own keys: the phone's note is there.
    let mut laptop = vettid_client::profile::Profile::open_enrolled(&laptop_dir).unwrap();
    let c = vettid_client::app::connect(&mut laptop).await.unwrap();
    let mut s = c.session.unlock(pin("2580"), &mut laptop).await.unwrap();
    let items = s.list_secrets(None, None, None, false).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["bobs-note-9e1a"]
    );
    let devices = s.devices().await.unwrap();
    assert_eq!(devices.len(), 2, "{devices:?}");
    drop(s);
    let laptop_key = vettid_crypto::noise::public_key(&laptop.noise_key().unwrap());
    drop(laptop);
    // The invite worked once.
    let again = stack.dir.path().join("profiles/bob-other");
    let (ok, out) = vettid_with(
        &[
            "app",
            "--profile",
            again.to_str().unwrap(),
            "join",
            "finish",
            "--invite-env",
            "INVITE",
            "--pin-env",
            "PIN",
        ],
        &[("PIN", "2580"), ("INVITE", &invite)],
    );
    assert!(!ok && out.contains("join token"), "{out}");

    // The phone removes the laptop: it can no longer reach the vault.
    let (ok, out) = vettid_with(
        &[
            "app",
            "--profile",
            phone_path,
            "devices",
            "--pin-env",
            "PIN",
            "remove",
            &hex::encode(laptop_key),
        ],
        &env,
    );
    assert!(ok && out.contains("removed"), "{out}");
    let (ok, out) = vettid_with(&["app", "--profile", laptop_path, "status"], &env);
    assert!(!ok, "a removed device still reaches the vault: {out}");
    let mut phone = vettid_client::profile::Profile::open_enrolled(&phone_dir).unwrap();
    let this = vettid_crypto::noise::public_key(&phone.noise_key().unwrap());
    drop(phone);
    let (ok, out) = vettid_with(
        &[
            "app",
            "--profile",
            phone_path,
            "devices",
            "--pin-env",
            "PIN",
            "remove",
            &hex::encode(this),
        ],
        &env,
    );
    assert!(!ok && out.contains("last device"), "{out}");
    phone = vettid_client::profile::Profile::open_enrolled(&phone_dir).unwrap();
    let c = vettid_client::app::connect(&mut phone).await.unwrap();
    let mut s = c.session.unlock(pin("2580"), &mut phone).await.unwrap();
    assert_eq!(s.devices().await.unwrap().len(), 1);
}

/// Two members connect vault to vault over the real stack (NATS, JetStream, the host, the
/// enclave): invitation, handshake, the six-digit code, approvals, messages with receipts, a
/// message that waits in JetStream while the recipient's vault is locked, revocation — and a
/// capture of every MessageSpace message shows the broker nothing but recipients and sizes.
mod connections {
    use super::*;
    use vettid_client::vault::{Seen, Unlocked};
    use vettid_proto::connections::{ConnectionError, ConnectionState};
    use vettid_proto::session::EventKind;

    /// Waits (on the vault's events, long-polled through the host) for one that `pred` accepts.
    async fn event<S: Seen>(s: &Unlocked<S>, what: &str, pred: impl Fn(&EventKind) -> bool) {
        let came = s
            .wait_for_event(Duration::from_secs(90), pred)
            .await
            .unwrap();
        assert!(came, "no {what} event");
    }

    fn find(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        walk(dir)
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .unwrap_or_else(|| panic!("no {name} under {}", dir.display()))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_members_connect_exchange_messages_with_receipts_and_the_broker_sees_only_recipients()
     {
        let stack = UpStack::start();
        let pin = |p: &str| Zeroizing::new(p.as_bytes().to_vec());
        // The host's own NATS user: it reads the peers stream (every MessageSpace message
        // the broker carried is kept there) at the end.
        let host =
            async_nats::ConnectOptions::with_credentials_file(find(&stack.data(), "host.creds"))
                .await
                .unwrap()
                .connect(&stack.nats)
                .await
                .unwrap();

        let mut alice_profile = stack.enrolled("alice", "1357").await;
        let mut bob_profile = stack.enrolled("bob", "2468").await;
        let alice_id = alice_profile.member().unwrap().to_owned();
        let bob_id = bob_profile.member().unwrap().to_owned();
        let c = vettid_client::app::connect(&mut alice_profile)
            .await
            .unwrap();
        let mut alice = c
            .session
            .unlock(pin("1357"), &mut alice_profile)
            .await
            .unwrap();
        let c = vettid_client::app::connect(&mut bob_profile).await.unwrap();
        let mut bob = c
            .session
            .unlock(pin("2468"), &mut bob_profile)
            .await
            .unwrap();

        // Alice invites; the text is what her QR code or link carries.
        let (_, invitation) = alice
            .invite(Some("bob from the café".into()), None, false)
            .await
            .unwrap();
        let text = vettid_client::connections::encode_invitation(&invitation);
        assert!(
            !text.contains(&alice_id),
            "the invitation text does not spell the member id"
        );
        let invitation = vettid_client::connections::decode_invitation(&text).unwrap();
        let bob_conn = bob.accept_invitation(invitation).await.unwrap();
        let review = |e: &EventKind| {
            matches!(
                e,
                EventKind::Connection {
                    state: ConnectionState::PendingReview,
                    ..
                }
            )
        };
        event(&bob, "bob's review", review).await;
        event(&alice, "alice's review", review).await;
        let a = alice.connections().await.unwrap().remove(0);
        let b = bob.connection(bob_conn).await.unwrap();
        assert_eq!(a.sas, b.sas, "both apps show the same code");
        assert_eq!(a.peer_member.as_deref(), Some(bob_id.as_str()));
        let sas = a.sas.clone().unwrap();

        alice
            .approve_connection(a.id, Some(sas.clone()))
            .await
            .unwrap();
        let wrong = format!("{:06}", (sas.parse::<u32>().unwrap() + 1) % 1_000_000);
        match bob.approve_connection(b.id, Some(wrong)).await {
            Err(ClientError::Vault(VaultError::Connections(ConnectionError::SasMismatch))) => {}
            other => panic!("a wrong code was not refused: {other:?}"),
        }
        bob.approve_connection(b.id, Some(sas)).await.unwrap();
        let active = |e: &EventKind| {
            matches!(
                e,
                EventKind::Connection {
                    state: ConnectionState::Active,
                    ..
                }
            )
        };
        event(&alice, "alice's connection active", active).await;
        assert_eq!(
            bob.connection(b.id).await.unwrap().state,
            ConnectionState::Active
        );

        // A message, stored by bob's vault (event), delivered receipt back to alice.
        let seq = alice
            .send_message(a.id, "marker-5e1f first words")
            .await
            .unwrap();
        event(&bob, "bob's message", |e| {
            matches!(e, EventKind::Message { .. })
        })
        .await;
        event(
            &alice,
            "alice's delivered receipt",
            |e| matches!(e, EventKind::Receipt { read: false, seqs, .. } if seqs.contains(&seq)),
        )
        .await;
        let (history, _) = bob.messages(b.id, None, 50).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].text, "marker-5e1f first words");

        // Bob locks; alice's next messages wait in JetStream and arrive after his unlock: two
        // files of 1 MiB (their pieces more than one batch of the enclave's takes) and a text.
        let session = bob.lock().await.unwrap();
        let files: Vec<Vec<u8>> = (0..2u8)
            .map(|i| (0..1 << 20).map(|j: u32| (j % 251) as u8 ^ i).collect())
            .collect();
        for (i, f) in files.iter().enumerate() {
            alice
                .send_file(
                    a.id,
                    &format!("f{i}.bin"),
                    "application/octet-stream",
                    f,
                    None,
                )
                .await
                .unwrap();
        }
        let last = alice
            .send_message(a.id, "marker-5e1f while you were away")
            .await
            .unwrap();
        let mut bob = session.unlock(pin("2468"), &mut bob_profile).await.unwrap();
        // In order: when the text is in, so are the files before it.
        event(
            &bob,
            "the message that waited",
            |e| matches!(e, EventKind::Message { seq, .. } if *seq == last),
        )
        .await;
        let (history, _) = bob.messages(b.id, None, 50).await.unwrap();
        assert_eq!(history.len(), 4, "delivered once each, after the unlock");
        assert_eq!(history[0].text, "marker-5e1f while you were away");
        for (m, f) in history[1..3].iter().rev().zip(&files) {
            assert!(m.attachment.as_ref().is_some_and(|a| a.complete), "{m:?}");
            assert_eq!(&bob.download(b.id, false, m.seq).await.unwrap(), f);
        }
        bob.mark_read(b.id, history[0].seq).await.unwrap();
        event(&alice, "alice's read receipt", |e| {
            matches!(e, EventKind::Receipt { read: true, .. })
        })
        .await;
        let (mine, _) = alice.messages(a.id, None, 50).await.unwrap();
        assert!(mine.iter().all(|m| m.outgoing && m.delivered_ms.is_some()));
        assert!(
            mine.iter().all(|m| m.read_ms.is_some()),
            "read up to the newest"
        );

        // Alice rotates the connection's keys: both vaults move to epoch 1 and messages go on.
        alice.rotate_connection(a.id).await.unwrap();
        event(&alice, "alice's rotation answered", active).await;
        assert_eq!(alice.connection(a.id).await.unwrap().epoch, 1);
        alice
            .send_message(a.id, "marker-5e1f under new keys")
            .await
            .unwrap();
        event(&bob, "the message under the new epoch", |e| {
            matches!(e, EventKind::Message { .. })
        })
        .await;
        let rotated = bob.connection(b.id).await.unwrap();
        assert_eq!((rotated.epoch, rotated.rotating), (1, false));
        assert_eq!(
            bob.messages(b.id, None, 1).await.unwrap().0[0].text,
            "marker-5e1f under new keys"
        );

        // Bob revokes: alice's vault is told, and a message on the connection is refused.
        bob.revoke_connection(b.id).await.unwrap();
        event(&alice, "alice told of the revocation", |e| {
            matches!(
                e,
                EventKind::Connection {
                    state: ConnectionState::Revoked,
                    ..
                }
            )
        })
        .await;
        assert!(matches!(
            alice.send_message(a.id, "after the end").await,
            Err(ClientError::Vault(VaultError::Messages(_)))
        ));

        // What the broker carried: the recipient in the subject, a bucket-sized body, a
        // de-duplication id; never a sender, a connection id or a word of the messages.
        let js = async_nats::jetstream::new(host);
        let mut stream = js.get_stream(vettid_nats::PEERS_STREAM).await.unwrap();
        let info = stream.info().await.unwrap().state.clone();
        let mut carried = Vec::new();
        for seq in info.first_sequence..=info.last_sequence {
            carried.push(stream.get_raw_message(seq).await.unwrap());
        }
        assert!(carried.len() >= 8, "{} messages carried", carried.len());
        let ids = [a.id, b.id];
        for m in &carried {
            let recipient = m.subject.split('.').nth(1).unwrap();
            assert!(
                recipient == alice_id || recipient == bob_id,
                "{}",
                m.subject
            );
            assert_eq!(
                m.subject.as_str(),
                vettid_proto::peer::peer_subject(recipient)
            );
            let sender = if recipient == alice_id {
                &bob_id
            } else {
                &alice_id
            };
            assert!(vettid_proto::peer::BUCKETS.contains(&m.payload.len()));
            let mut visible = m.payload.to_vec();
            for (name, values) in m.headers.iter() {
                visible.extend(name.to_string().into_bytes());
                for v in values {
                    visible.extend(v.as_str().as_bytes());
                }
            }
            let contains = |needle: &[u8]| visible.windows(needle.len()).any(|w| w == needle);
            assert!(!contains(sender.as_bytes()), "a sender's id is visible");
            for id in &ids {
                assert!(!contains(id) && !contains(hex::encode(id).as_bytes()));
            }
            assert!(!contains(b"marker-5e1f"));
        }
        drop((alice, bob));
        stack_files_containing(&stack.data(), &[b"marker-5e1f", b"from the caf"]);
    }

    /// The same story from the command line, each command its own process.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_app_commands_connect_two_members_and_carry_messages() {
        let stack = UpStack::start();
        let (alice, bob) = (
            stack.enrolled("ana", "1470").await,
            stack.enrolled("ben", "2581").await,
        );
        let (a_dir, b_dir) = (alice.dir().to_path_buf(), bob.dir().to_path_buf());
        drop((alice, bob));
        let run = |dir: &std::path::Path, group: &str, args: &[&str]| {
            let all: Vec<&str> = [
                "app",
                "--profile",
                dir.to_str().unwrap(),
                group,
                "--pin-env",
                "P",
            ]
            .iter()
            .chain(args)
            .copied()
            .collect();
            let pin = if dir == a_dir { "1470" } else { "2581" };
            vettid_with(&all, &[("P", pin)])
        };
        // Waits on the member's events (long-polled) for `needle`.
        let events_until = |dir: &std::path::Path, needle: &str| {
            for _ in 0..12 {
                let (ok, out) = vettid_with(
                    &[
                        "app",
                        "--profile",
                        dir.to_str().unwrap(),
                        "events",
                        "--wait-secs",
                        "10",
                    ],
                    &[],
                );
                assert!(ok, "{out}");
                if out.contains(needle) {
                    return;
                }
            }
            panic!("no {needle} event");
        };
        let (ok, out) = run(&a_dir, "connections", &["invite", "--label", "ben"]);
        assert!(ok && out.contains("✓ invitation"), "{out}");
        let text = out
            .lines()
            .find(|l| l.starts_with(vettid_client::connections::INVITATION_PREFIX))
            .unwrap()
            .to_owned();
        let invited = out.clone();
        let (ok, out) = run(&a_dir, "connections", &["invitations"]);
        assert!(
            ok && out.contains("1 pending invitation(s)") && out.contains("ben"),
            "{out}"
        );
        // Ben types the short code instead: his app finds the sealed invitation in the API's
        // directory and opens it.
        let code = invited
            .lines()
            .find_map(|l| l.strip_prefix("short code: "))
            .map(|l| l[..19].to_owned())
            .unwrap_or_else(|| panic!("no short code: {invited}"));
        assert!(!text.contains(&code));
        let (ok, out) = run(
            &b_dir,
            "connections",
            &["accept", "--code", "0000-0000-0000-0000"],
        );
        assert!(!ok && out.contains("no invitation has this code"), "{out}");
        let (ok, out) = run(
            &b_dir,
            "connections",
            &[
                "accept",
                "--code",
                &code.to_lowercase(),
                "--wait-secs",
                "60",
            ],
        );
        assert!(ok && out.contains("✓ keys agreed"), "{out}");
        let code_line = out
            .lines()
            .find(|l| l.trim_start().starts_with("code"))
            .unwrap()
            .to_owned();
        let code: String = code_line
            .trim_start()
            .trim_start_matches("code")
            .chars()
            .take_while(|c| *c != '(')
            .filter(|c| c.is_ascii_digit())
            .collect();
        assert_eq!(code.len(), 6, "{code_line}");
        let b_id = out.lines().find(|l| l.contains("pending-review")).unwrap()[..8].to_owned();
        events_until(&a_dir, "PendingReview");
        let (ok, out) = run(&a_dir, "connections", &["list"]);
        assert!(
            ok && out.contains("pending-review") && out.contains(&code[..3]),
            "{out}"
        );
        let a_id = out.lines().find(|l| l.contains("pending-review")).unwrap()[..8].to_owned();
        let (ok, out) = run(
            &a_dir,
            "connections",
            &["approve", &a_id, "--sas", "123 45"],
        );
        assert!(!ok && out.contains("does not match"), "{out}");
        let (ok, out) = run(&a_dir, "connections", &["approve", &a_id, "--sas", &code]);
        assert!(ok && out.contains("waiting for the peer"), "{out}");
        events_until(&b_dir, "PendingReview");
        let (ok, out) = run(&b_dir, "connections", &["approve", &b_id, "--sas", &code]);
        assert!(ok && out.contains("the connection is active"), "{out}");
        events_until(&a_dir, "Active");
        let (ok, out) = run(
            &a_dir,
            "messages",
            &["send", &a_id, "hello ben, from the command line"],
        );
        assert!(ok && out.contains("✓ message"), "{out}");
        events_until(&b_dir, "Message");
        let (ok, out) = run(&b_dir, "messages", &["list", &b_id]);
        assert!(
            ok && out.contains("hello ben, from the command line") && out.contains("(unread)"),
            "{out}"
        );
        let seq: String = out
            .lines()
            .find(|l| l.contains("hello ben"))
            .and_then(|l| l.split('#').nth(1))
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let (ok, out) = run(&b_dir, "messages", &["read", &b_id, &seq]);
        assert!(ok && out.contains("✓ read"), "{out}");
        events_until(&a_dir, "read: true");
        // Ana sends a file; ben saves it.
        let photo: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let photo_path = a_dir.join("beach.bin");
        std::fs::write(&photo_path, &photo).unwrap();
        let (ok, out) = run(
            &a_dir,
            "messages",
            &[
                "send-file",
                &a_id,
                photo_path.to_str().unwrap(),
                "--text",
                "the beach",
            ],
        );
        assert!(
            ok && out.contains("in 2 piece(s)") && out.contains("✓ message"),
            "{out}"
        );
        events_until(&b_dir, "Message");
        let (ok, out) = run(&b_dir, "messages", &["list", &b_id]);
        assert!(
            ok && out.contains("[file beach.bin (application/octet-stream, 70000 bytes)]"),
            "{out}"
        );
        let file_seq: String = out
            .lines()
            .find(|l| l.contains("beach.bin"))
            .and_then(|l| l.split('#').nth(1))
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let saved = b_dir.join("saved.bin");
        let (ok, out) = run(
            &b_dir,
            "messages",
            &["save", &b_id, &file_seq, saved.to_str().unwrap()],
        );
        assert!(ok && out.contains("70000 bytes written"), "{out}");
        assert_eq!(std::fs::read(&saved).unwrap(), photo);
        let (ok, out) = run(
            &b_dir,
            "messages",
            &["save", &b_id, &file_seq, saved.to_str().unwrap()],
        );
        assert!(!ok && out.contains("must not exist"), "{out}");
        // Ana edits her message, then deletes it for everyone.
        let (ok, out) = run(
            &a_dir,
            "messages",
            &["edit", &a_id, &seq, "hello ben (edited)"],
        );
        assert!(ok && out.contains("✓ message"), "{out}");
        events_until(&b_dir, "MessageChanged");
        let (ok, out) = run(&b_dir, "messages", &["list", &b_id]);
        assert!(ok && out.contains("hello ben (edited)  (edited)"), "{out}");
        let (ok, out) = run(&a_dir, "messages", &["delete", &a_id, &seq]);
        assert!(ok && out.contains("deleted for everyone"), "{out}");
        events_until(&b_dir, "deleted: true");
        let (ok, out) = run(&b_dir, "messages", &["list", &b_id]);
        assert!(
            ok && out.contains("(deleted for everyone)") && !out.contains("hello ben"),
            "{out}"
        );
        let (ok, out) = run(&b_dir, "messages", &["retention", "--days", "30"]);
        assert!(ok && out.contains("kept 30 day(s)"), "{out}");
        let (ok, out) = run(&b_dir, "messages", &["retention", &b_id, "--days", "0"]);
        assert!(!ok && out.contains("1-3650 days"), "{out}");
        // Ben asks ana for her contact details; she grants two fetches for a day.
        let (ok, out) = vettid_with(
            &[
                "app",
                "--profile",
                a_dir.to_str().unwrap(),
                "personal",
                "--pin-env",
                "P",
                "set",
                "contact.phone",
                "--value-env",
                "PHONE",
                "--category",
                "contact",
            ],
            &[("P", "1470"), ("PHONE", "+1 555 0142")],
        );
        assert!(ok, "{out}");
        let (ok, out) = run(
            &b_dir,
            "connections",
            &["ask", &b_id, "--category", "contact"],
        );
        assert!(ok && out.contains("✓ request"), "{out}");
        events_until(&a_dir, "incoming: true");
        let (ok, out) = run(&a_dir, "connections", &["requests"]);
        assert!(
            ok && out.contains("asked of you") && out.contains("pending"),
            "{out}"
        );
        let request = out.lines().find(|l| l.contains("asked of you")).unwrap()[..8].to_owned();
        let (ok, out) = run(
            &a_dir,
            "connections",
            &["grant", &request, "--uses", "2", "--days", "1"],
        );
        assert!(ok && out.contains("✓ granted"), "{out}");
        events_until(&b_dir, "incoming: false");
        let (ok, out) = run(&b_dir, "connections", &["requests"]);
        assert!(
            ok && out.contains("granted")
                && out.contains("+1 555 0142")
                && out.contains("1 fetch(es) left"),
            "{out}"
        );
        let (ok, out) = run(
            &a_dir,
            "connections",
            &["rotate", &a_id, "--wait-secs", "60"],
        );
        assert!(ok && out.contains("✓ keys rotated: epoch 1"), "{out}");
        let (ok, out) = run(&a_dir, "connections", &["show", &a_id]);
        assert!(ok && out.contains("epoch 1"), "{out}");
        let (ok, out) = run(&b_dir, "connections", &["revoke", &b_id]);
        assert!(ok && out.contains("✓ revoked"), "{out}");
        events_until(&a_dir, "Revoked");
        let (ok, out) = run(&a_dir, "messages", &["send", &a_id, "still there?"]);
        assert!(!ok && out.contains("not active"), "{out}");

        // Ben blocks ana: her next invitation is refused by his vault, until he unblocks.
        let (ok, out) = run(&b_dir, "connections", &["block", &b_id]);
        assert!(ok && out.contains("✓ blocked"), "{out}");
        let (ok, out) = run(&b_dir, "connections", &["blocked"]);
        assert!(ok && out.contains("1 blocked member(s)"), "{out}");
        let (ok, out) = run(&a_dir, "connections", &["invite"]);
        assert!(ok, "{out}");
        let again = out
            .lines()
            .find(|l| l.starts_with(vettid_client::connections::INVITATION_PREFIX))
            .unwrap()
            .to_owned();
        let (ok, out) = run(&b_dir, "connections", &["accept", &again]);
        assert!(!ok && out.contains("you blocked this member"), "{out}");
        let (ok, out) = run(&b_dir, "connections", &["unblock", &b_id]);
        assert!(ok && out.contains("✓ unblocked"), "{out}");
        let (ok, out) = run(&b_dir, "connections", &["blocked"]);
        assert!(ok && out.contains("0 blocked member(s)"), "{out}");
        // Ana sends her pending invitation again: a new one replaces it.
        let (ok, out) = run(&a_dir, "connections", &["invitations"]);
        assert!(ok && out.contains("1 pending invitation(s)"), "{out}");
        let pending = out.lines().find(|l| l.contains("until")).unwrap()[..32].to_owned();
        let (ok, out) = run(&a_dir, "connections", &["resend", &pending]);
        assert!(
            ok && out.contains("the old invitation is cancelled") && out.contains("short code: "),
            "{out}"
        );
        let (ok, out) = run(&a_dir, "connections", &["invitations"]);
        assert!(
            ok && out.contains("1 pending invitation(s)") && !out.contains(&pending),
            "{out}"
        );
        // The panic button asks first, then ends everything.
        let (ok, out) = run(&a_dir, "connections", &["revoke-all"]);
        assert!(!ok && out.contains("--yes"), "{out}");
        let (ok, out) = run(&a_dir, "connections", &["revoke-all", "--yes"]);
        assert!(ok && out.contains("✓ 0 connection(s) revoked"), "{out}");
        let (ok, out) = run(&a_dir, "connections", &["invitations"]);
        assert!(ok && out.contains("0 pending invitation(s)"), "{out}");
        let (ok, out) = run(&a_dir, "connections", &["show", "zz"]);
        assert!(!ok && out.contains("hex"), "{out}");
    }
}
