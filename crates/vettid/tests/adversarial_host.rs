//! The enclave against a host that lies (`vettid_testkit::AdversarialHost`): every test runs
//! the real enclave process and the real SDK, and the host does exactly what a hostile
//! operator would. Each test is named for what the host must not achieve.

mod support;

use support::adversary::*;
use vettid_client::ClientError;
use vettid_crypto::SecretBytes;
use vettid_proto::enclave::{HostReply, Invalid, ToHost, VaultError, VaultOp};
use vettid_proto::secrets::{ItemContent, Secret, SecretData};
use vettid_proto::session::{Channel, SessionError};
use vettid_testkit::{Action, Store};
use zeroize::Zeroizing;

fn is_alice(name: &str) -> bool {
    name.starts_with("vaults/alice/")
}

/// The host says alice's vault does not exist, and that everything the enclave asks it to
/// store for alice was stored (it keeps none of it).
fn pretend_alice_has_no_vault(adv: &Adversary) {
    adv.host.script(|req, _| match req {
        ToHost::List { prefix } if is_alice(prefix) => Action::Answer(HostReply::Names(vec![])),
        ToHost::PutCreate { name, .. } if is_alice(name) => Action::Answer(HostReply::Created),
        ToHost::Get { name } if is_alice(name) => Action::Answer(HostReply::Object(None)),
        _ => Action::Honest,
    });
}

/// Finding 2: the host says alice's vault does not exist and that everything it is asked to
/// store was stored, so that an enrollment with its own device "succeeds"; then it serves the
/// real objects again and has its device try the member's PIN.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_enrollment_gives_the_hosts_device_no_pin_attempt_on_the_real_vault() {
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let mut s = enrolled(&adv, "alice", &alice).await;
    s.create_secret(note("real")).await.unwrap();
    let real = adv.host.store().vault("alice");

    pretend_alice_has_no_vault(&adv);
    let host_device = SecretBytes::random();
    let _ = adv.enroll("alice", &host_device).await;
    adv.host.honest();
    assert_eq!(
        adv.host.store().vault("alice"),
        real,
        "the forgery kept nothing"
    );

    let guards = adv.host.store().numbers("alice", "guard");
    match adv.unlocked("alice", &host_device, PIN).await {
        Err(ClientError::Session(SessionError::DeviceNotRegistered))
        | Err(ClientError::Vault(VaultError::DeviceNotRegistered)) => {}
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("the host's device unlocked the member's vault"),
    }
    assert_eq!(
        adv.host.store().numbers("alice", "guard"),
        guards,
        "no PIN attempt was even counted"
    );
    // The member's own device still opens it, with everything in it.
    let (mut s, _) = adv.unlocked("alice", &alice, PIN).await.unwrap();
    assert_eq!(item_names(&mut s).await.unwrap(), ["real"]);
    drop(s);

    // After a restart the enclave knows nothing of alice: the forged enrollment "succeeds",
    // and still gives the host's device no attempt at the real vault.
    adv.host.restart_enclave().unwrap();
    pretend_alice_has_no_vault(&adv);
    adv.enroll("alice", &host_device)
        .await
        .expect("the enclave cannot tell a forged empty listing");
    adv.host.honest();
    let guards = adv.host.store().numbers("alice", "guard");
    assert!(
        adv.unlocked("alice", &host_device, PIN).await.is_err(),
        "the host's device unlocked the member's vault after a restart"
    );
    assert_eq!(adv.host.store().numbers("alice", "guard"), guards);
}

/// Finding 2, debug path: a forged `Create` must not make an app's vault look app-free.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_debug_create_does_not_open_the_debug_path_to_an_app_vault() {
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    adv.enroll("alice", &alice).await.unwrap();
    pretend_alice_has_no_vault(&adv);
    let _ = adv.host.vault(
        "alice",
        VaultOp::Create {
            pin: b"1111".to_vec(),
        },
    );
    adv.host.honest();
    let guards = adv.host.store().numbers("alice", "guard");
    for op in [
        VaultOp::Unlock {
            pin: PIN.as_bytes().to_vec(),
        },
        VaultOp::Get { key: "k".into() },
        VaultOp::Put {
            key: "k".into(),
            value: b"v".to_vec(),
        },
    ] {
        let name = format!("{op:?}");
        assert!(
            matches!(adv.host.vault("alice", op), Err(VaultError::AppOwned)),
            "debug {name} reached an app's vault"
        );
    }
    assert_eq!(adv.host.store().numbers("alice", "guard"), guards);
}

/// Finding 3: the host answers one write with `AlreadyExists` (so the enclave drops its copy),
/// then serves an older snapshot and a truncated log.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_lies_about_a_write_cannot_serve_an_older_state() {
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let mut s = enrolled(&adv, "alice", &alice).await;
    s.create_secret(note("one")).await.unwrap();
    let old = adv.host.store().vault("alice");
    s.create_secret(note("two")).await.unwrap();

    let mut lied = false;
    adv.host.script(move |req, store| match req {
        ToHost::PutCreate { name, .. } if !lied && name.starts_with("vaults/alice/log/") => {
            lied = true;
            store.restore_vault("alice", &old);
            Action::Answer(HostReply::AlreadyExists)
        }
        _ => Action::Honest,
    });
    let refused = s.create_secret(note("three")).await;
    assert!(
        refused.is_err(),
        "the write the host refused is not acknowledged"
    );
    for attempt in 0..2 {
        match item_names(&mut s).await {
            Err(ClientError::Vault(VaultError::RolledBack { .. })) => {}
            other => panic!("attempt {attempt}: the older state was served: {other:?}"),
        }
    }
    assert!(
        matches!(
            s.create_secret(note("fork")).await,
            Err(ClientError::Vault(VaultError::RolledBack { .. }))
        ),
        "no write lands on the older state"
    );
}

/// Finding 3, eviction: an evicted vault reloads only at or above what this enclave saw.
#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_vault_does_not_reload_from_older_storage() {
    let adv = Adversary::start(&["--idle-secs", "0"]);
    let alice = SecretBytes::random();
    let mut s = enrolled(&adv, "alice", &alice).await;
    let old = adv.host.store().vault("alice");
    s.create_secret(note("one")).await.unwrap();
    adv.host.store().restore_vault("alice", &old);
    // Until the evictor drops the vault from memory it answers from there; the first answer
    // after a reload from (rolled back) storage must be a refusal.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "never evicted");
        adv.host.take_seen();
        let names = item_names(&mut s).await;
        let reloaded = adv
            .host
            .take_seen()
            .iter()
            .any(|r| matches!(r, ToHost::List { prefix } if prefix.ends_with("/log/")));
        if !reloaded {
            assert_eq!(names.unwrap(), ["one"]);
            continue;
        }
        match names {
            Err(ClientError::Vault(VaultError::RolledBack { .. })) => break,
            other => panic!("reloaded from the older state: {other:?}"),
        }
    }
}

/// Finding 8: epoch objects (one per load) do not pile up.
#[tokio::test(flavor = "multi_thread")]
async fn epochs_are_compacted_as_vaults_reload() {
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    adv.enroll("alice", &alice).await.unwrap();
    for _ in 0..5 {
        let (s, _) = adv.unlocked("alice", &alice, PIN).await.unwrap();
        s.lock().await.unwrap();
    }
    let epochs = adv.host.store().numbers("alice", "epoch");
    assert!(epochs.len() <= 2, "epochs kept: {epochs:?}");
}

/// Finding 4: a device that saw version N comes back after the host restarted the enclave,
/// rolled storage back below N and let another session write past N on the old branch.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_saw_a_newer_history_is_told_of_a_fork_after_a_restart() {
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let mut s = enrolled(&adv, "alice", &alice).await;
    s.create_secret(note("a")).await.unwrap();
    let old = adv.host.store().vault("alice");
    s.create_secret(note("b")).await.unwrap();
    let (_, seen) = s.create_secret(note("c")).await.unwrap();
    drop(s);

    adv.host.restart_enclave().unwrap();
    adv.host.store().restore_vault("alice", &old);
    let (mut other, _) = adv.unlocked("alice", &alice, PIN).await.unwrap();
    for name in ["x", "y", "z", "w"] {
        other.create_secret(note(name)).await.unwrap();
    }
    drop(other);

    // The lagging session is still open on the fork when the first app comes back.
    let (mut lagging, _) = adv.unlocked("alice", &alice, PIN).await.unwrap();
    lagging.create_secret(note("v")).await.unwrap();
    match adv.unlocked_after("alice", &alice, PIN, &seen).await {
        Err(ClientError::Vault(VaultError::RolledBack { .. })) => {}
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(v) => panic!("the fork at version {} went unnoticed", v.version),
    }
    // Proven forked: closed for every session, not only the one that showed it.
    assert!(matches!(
        lagging.create_secret(note("after")).await,
        Err(ClientError::Vault(VaultError::RolledBack { .. }))
    ));
    assert!(matches!(
        adv.unlocked("alice", &alice, PIN).await,
        Err(ClientError::Vault(VaultError::RolledBack { .. }))
    ));
}

/// Issue 12: the SDK checks the vault-signed version of every answer itself. Storage rolled
/// back behind a restarted enclave (which cannot know) is refused by the enclave once the SDK
/// anchors (it does before every unlock), and by the SDK's own check when no anchor was shown.
#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_refuses_a_rolled_back_vault_that_the_enclave_cannot_know_of() {
    use vettid_client::vault::{Mark, Seen};
    use vettid_proto::enclave::SignedVersion;
    /// A mark that never offers the enclave an anchor: only the SDK's check is left.
    struct Unanchored(Mark);
    impl Seen for Unanchored {
        fn observe(&mut self, v: &SignedVersion) -> Result<(), ClientError> {
            self.0.observe(v)
        }
        fn newest(&self) -> Option<SignedVersion> {
            None
        }
    }
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let mut s = enrolled(&adv, "alice", &alice).await;
    s.create_secret(note("a")).await.unwrap();
    let old = adv.host.store().vault("alice");
    s.create_secret(note("b")).await.unwrap();
    let mark = s.seen().clone();
    drop(s);
    adv.host.restart_enclave().unwrap();
    adv.host.store().restore_vault("alice", &old);
    let pin = || Zeroizing::new(PIN.as_bytes().to_vec());

    // No anchor shown: the enclave serves the old state, the SDK refuses it.
    let session = adv
        .session("alice", &alice, Channel::Session)
        .await
        .unwrap();
    match session.unlock(pin(), Unanchored(mark.clone())).await {
        // The unlock's own write brings the old branch up to the number seen, with another
        // change: a fork.
        Err(ClientError::Rollback { got, seen }) => assert!(got <= seen, "{got} <= {seen}"),
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(u) => panic!("unlocked a rolled-back vault at {}", u.version()),
    }
    // The SDK's unlock anchors first: the enclave refuses the branch for good.
    let session = adv
        .session("alice", &alice, Channel::Session)
        .await
        .unwrap();
    match session.unlock(pin(), mark).await {
        Err(ClientError::Vault(VaultError::RolledBack { .. })) => {}
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(u) => panic!("unlocked a rolled-back vault at {}", u.version()),
    }
}

/// Issue 13: a host that hides the keys generation a PIN reset just wrote (so that the old PIN
/// would go on working) is refused: the reset fails as tampering instead of seeming done.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_hiding_the_generation_a_pin_reset_wrote_is_refused() {
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let enrolled = adv.enroll("alice", &alice).await.unwrap();
    let phrase = vettid_client::recovery::RecoveryPhrase::from_entropy(&enrolled.recovery_phrase);
    adv.host.script(|req, store| match req {
        ToHost::List { prefix } if prefix == "vaults/alice/keys/" => Action::Answer(
            HostReply::Names(store.names(prefix).into_iter().take(1).collect()),
        ),
        _ => Action::Honest,
    });
    let session = adv
        .session("alice", &alice, Channel::Session)
        .await
        .unwrap();
    let r = session
        .reset_pin(
            &phrase,
            Zeroizing::new(b"97531".to_vec()),
            vettid_client::vault::Mark::new("alice", enrolled.identity_public_key),
        )
        .await
        .map(|_| ());
    assert!(
        matches!(r, Err(ClientError::Vault(VaultError::Tampered(_)))),
        "{r:?}"
    );
}

/// Issue 12: what reaches the member's app is in the enclave's words: a host that fails a
/// request with text of its choosing, or lists an object name of its choosing, cannot put that
/// text in front of the member.
#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_own_words_never_reach_the_app() {
    const BAIT: &str = "call-555-0100-to-restore-your-vault";
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let mut s = enrolled(&adv, "alice", &alice).await;
    adv.host.script(|req, _| match req {
        ToHost::PutCreate { name, .. } if is_alice(name) => {
            Action::Answer(HostReply::Error(BAIT.into()))
        }
        _ => Action::Honest,
    });
    let failed = s.create_secret(note("x")).await;
    assert!(
        matches!(&failed, Err(ClientError::Vault(VaultError::Storage(_)))),
        "{failed:?}"
    );
    let text = format!("{:?} {}", failed, failed.as_ref().unwrap_err());
    assert!(!text.contains(BAIT), "{text}");
    drop(s);
    // A listing that names an object of the host's choosing, read at the next load.
    adv.host.script(|req, _| match req {
        ToHost::List { prefix } if is_alice(prefix) && prefix.ends_with("/log/") => {
            Action::Answer(HostReply::Names(vec![format!("{prefix}{BAIT}")]))
        }
        _ => Action::Honest,
    });
    adv.host.restart_enclave().unwrap();
    let r = adv.unlocked("alice", &alice, PIN).await.map(|_| ());
    assert!(r.is_err(), "a forged listing was accepted");
    let text = format!("{:?} {}", r, r.as_ref().unwrap_err());
    assert!(!text.contains(BAIT), "{text}");
}

/// Finding 7: a credential reply lost in transit; the app retries the same request.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_credential_reply_is_answered_again_and_a_stale_blob_is_no_wrong_password() {
    use vettid_proto::credential::{CredentialOp, CriticalKind};
    use vettid_proto::secrets::Secret;
    use vettid_proto::session::{AppOp, AppReply};
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let enrolled_ = adv.enroll("alice", &alice).await.unwrap();
    let (mut s, _) = adv.unlocked("alice", &alice, PIN).await.unwrap();
    let blob = enrolled_.credential.clone();
    let add = |blob: &[u8], request: [u8; 16]| AppOp::Credential {
        blob: blob.to_vec(),
        verifier: zeroize::Zeroizing::new(VERIFIER),
        op: CredentialOp::Add {
            kind: CriticalKind::SeedPhrase,
            label: "wallet".into(),
            value: Secret::new("abandon abandon"),
        },
        request,
    };
    let attempts_left = |reply: AppReply| match reply {
        AppReply::Status { attempts_left, .. } => attempts_left,
        other => panic!("{other:?}"),
    };
    adv.host.drop_app_replies(1);
    assert!(
        s.call(add(&blob, [9; 16])).await.is_err(),
        "the reply was lost"
    );
    let AppReply::Credential(again) = s
        .call(add(&blob, [9; 16]))
        .await
        .expect("the retry is answered")
    else {
        panic!()
    };
    let vettid_proto::credential::CredentialResult::Added(added) = &again.result else {
        panic!("not the same answer: {:?}", again.result)
    };
    // Answered once more, identically (the first answer was never seen either).
    let AppReply::Credential(third) = s.call(add(&blob, [9; 16])).await.unwrap() else {
        panic!()
    };
    assert_eq!(third.result, again.result, "the same answer every time");
    assert_eq!(added.label, "wallet");
    // The new blob works, and holds the secret exactly once.
    let list = AppOp::Credential {
        blob: again.blob.clone(),
        verifier: zeroize::Zeroizing::new(VERIFIER),
        op: CredentialOp::List,
        request: [1; 16],
    };
    let AppReply::Credential(listed) = s.call(list).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        listed.result,
        vettid_proto::credential::CredentialResult::Listed(vec![added.clone()])
    );
    // The old blob with another request, or with another operation, is stale: not a guess
    // (no attempt is even written).
    let guards = adv.host.store().numbers("alice", "guard");
    for stale in [
        add(&blob, [10; 16]),
        AppOp::Credential {
            blob: blob.clone(),
            verifier: zeroize::Zeroizing::new(VERIFIER),
            op: CredentialOp::List,
            request: [9; 16],
        },
        add(b"garbage", [11; 16]),
    ] {
        assert!(
            matches!(
                s.call(stale).await,
                Err(ClientError::Vault(VaultError::StaleCredential))
            ),
            "stale blob refused as stale"
        );
    }
    assert_eq!(
        adv.host.store().numbers("alice", "guard"),
        guards,
        "nothing counted as a wrong password"
    );
    assert_eq!(attempts_left(s.call(AppOp::Status).await.unwrap()), 10);
}

/// Finding 1: the host answers the key service's part itself, with a TLS server of its own
/// (a certificate for the right name under its own root) that would hand the enclave a data
/// key the host chose. The enclave must refuse before sending it anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_playing_the_key_service_cannot_choose_the_sealing_key() {
    let adv = Adversary::start(&[]);
    let root = std::fs::read_to_string(adv.platform.dir.join("dev-attestor/root.pem")).unwrap();
    let fake = FakeKeyService::start(adv.dir.path(), &root);
    adv.host.relay_key_service_to(fake.socket.clone());
    let alice = SecretBytes::random();
    match adv.enroll("alice", &alice).await {
        Err(ClientError::Vault(VaultError::Sealing(_))) => {}
        other => panic!(
            "enrolled with the host's key service: {:?}",
            other.map(|_| ())
        ),
    }
    assert_eq!(
        fake.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the enclave sent the host's key service nothing (TLS refused its certificate)"
    );
    assert!(
        adv.host.store().names("vaults/alice/keys/").is_empty(),
        "no keys record under a host key"
    );
    // With the real key service relayed again, enrollment works.
    adv.host.relay_key_service_to(adv.platform.key_service());
    adv.enroll("alice", &alice).await.unwrap();
    let _ = fake.chosen;
}

/// Finding 1: the host alters or replays the key service's TLS bytes in transit.
#[tokio::test(flavor = "multi_thread")]
async fn altered_or_replayed_key_service_bytes_are_refused() {
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    // A flipped bit in the service's first flight.
    let mut flipped = false;
    adv.host.script(move |req, _| match req {
        ToHost::Receive { .. } if !flipped => {
            flipped = true;
            Action::Rewrite(Box::new(|reply| match reply {
                HostReply::Bytes(mut b) if !b.is_empty() => {
                    let i = b.len() / 2;
                    b[i] ^= 1;
                    HostReply::Bytes(b)
                }
                other => other,
            }))
        }
        _ => Action::Honest,
    });
    assert!(matches!(
        adv.enroll("alice", &alice).await,
        Err(ClientError::Vault(VaultError::Sealing(_)))
    ));
    assert!(adv.host.store().names("vaults/alice/keys/").is_empty());
    // Recorded answers of one connection replayed on the next.
    adv.host.honest();
    adv.enroll("bob", &SecretBytes::random()).await.unwrap();
    let recorded: Vec<Vec<u8>> = adv
        .host
        .take_seen()
        .into_iter()
        .filter_map(|r| match r {
            ToHost::Send { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert!(!recorded.is_empty());
    // Nothing the host carried is readable: no document, no operation name, no key field.
    for bytes in &recorded {
        for needle in [
            &b"GenerateDataKey"[..],
            b"Recipient",
            b"RSAES_OAEP",
            b"alice",
            b"bob",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the host read {:?} in the key-service stream",
                String::from_utf8_lossy(needle)
            );
        }
    }
    let replies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
    // Record the service's bytes of one more enrollment, then serve them to the next one.
    {
        let replies = replies.clone();
        adv.host.script(move |req, _| match req {
            ToHost::Receive { .. } => {
                let replies = replies.clone();
                Action::Rewrite(Box::new(move |reply| {
                    if let HostReply::Bytes(b) = &reply {
                        replies.lock().unwrap().push(b.clone());
                    }
                    reply
                }))
            }
            _ => Action::Honest,
        });
    }
    adv.enroll("carol", &SecretBytes::random()).await.unwrap();
    let recorded = std::mem::take(&mut *replies.lock().unwrap());
    let mut queue = std::collections::VecDeque::from(recorded);
    adv.host.script(move |req, _| match req {
        ToHost::Receive { .. } => {
            Action::Answer(HostReply::Bytes(queue.pop_front().unwrap_or_default()))
        }
        _ => Action::Honest,
    });
    assert!(matches!(
        adv.enroll("dave", &SecretBytes::random()).await,
        Err(ClientError::Vault(VaultError::Sealing(_)))
    ));
    assert!(adv.host.store().names("vaults/dave/keys/").is_empty());
}

/// Finding 6: documents come from the enclave's device. The host cannot ask the platform for
/// one, and the one it relays to apps (binding the session key) gets it no data key.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_gets_no_attestation_document_or_key_of_its_own() {
    use vettid_proto::channel::{Frame, Kind, from_body, to_body};
    use vettid_proto::platform::FromPlatform;
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    adv.enroll("alice", &alice).await.unwrap();
    // The platform answers a host only about launches.
    for body in [
        vec![7u8, 1, 2, 3],
        to_body(&vettid_proto::platform::ToDevice::Attest {
            nonce: None,
            public_key: Some(vec![1; 32]),
            user_data: None,
        }),
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(adv.platform.socket()).unwrap();
        Frame {
            kind: Kind::Request,
            id: 1,
            body,
        }
        .write_to(&mut s)
        .unwrap();
        let answer: FromPlatform = from_body(&Frame::read_from(&mut s).unwrap().body).unwrap();
        assert!(matches!(answer, FromPlatform::Refused(_)), "{answer:?}");
    }
    // The enclave never asked the host for a document (there is no such request), yet apps
    // attested it: the document the host relayed binds the session key, not an RSA key.
    let client = adv.host.app("alice");
    let nonce = [9u8; 32];
    let body = postcard::to_allocvec(&vettid_proto::session::FromApp::Attest { nonce }).unwrap();
    let _ = client;
    let answer = adv
        .host
        .call(&vettid_proto::enclave::ToEnclave::App {
            member: "alice".into(),
            channel: vettid_proto::session::Channel::Attestation,
            now_ms: 0,
            body,
        })
        .unwrap();
    let vettid_proto::enclave::EnclaveReply::App { body, .. } = answer else {
        panic!()
    };
    let vettid_proto::session::ToApp::Attestation { doc, .. } =
        postcard::from_bytes(&body).unwrap()
    else {
        panic!()
    };
    // The host takes it to the key service itself (it can reach it: the relay is its own)
    // with the wrapped key of alice's sealed secret.
    let keys = adv
        .host
        .store()
        .get(&Store::name("alice", "keys", 0))
        .unwrap()
        .clone();
    let sealed = sealed_secret(&keys);
    let len = u16::from_be_bytes([sealed[5], sealed[6]]) as usize;
    let wrapped = sealed[7..7 + len].to_vec();
    let root = std::fs::read_to_string(adv.platform.dir.join("dev-attestor/kms-root.pem")).unwrap();
    let kms = vettid_attest::seal::kms::KmsClient::new(
        DirectKeyService(adv.platform.key_service()),
        vettid_attest::seal::kms::Trust {
            server_name: "kms.vettid.dev".into(),
            roots_pem: root,
            key_id: "vettid-dev".into(),
            region: "dev".into(),
        },
    )
    .unwrap();
    use vettid_attest::seal::KeyService;
    match kms.decrypt(&wrapped, &doc) {
        Err(vettid_attest::seal::SealError::KeyService(e)) => {
            assert!(e.contains("AccessDenied"), "{e}")
        }
        other => panic!("the key service answered a relayed session document: {other:?}"),
    }
    // Control (the request itself is right): a document binding a key of the host's own,
    // which no platform would give it — made here from the dev root's key file — would
    // release the key. That is why documents come only from the enclave's device.
    let dir = &adv.platform.dir;
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
    let root = vettid_attest::dev::DevRoot::from_pem(
        &read("dev-attestor/root.key"),
        &read("dev-attestor/root.pem"),
    )
    .unwrap();
    let measurement = vettid_attest::Measurement::of_enclave(
        &std::fs::read(support::enclave_binary()).unwrap(),
        &std::fs::read(dir.join("manifest/enclave-config.json")).unwrap(),
    );
    let mine = vettid_attest::seal::RecipientKey::generate();
    let forged = vettid_attest::dev::DevAttestor::new(&root, measurement)
        .attest(
            &vettid_attest::AttestRequest {
                public_key: Some(mine.public_der().to_vec()),
                ..Default::default()
            },
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
    let cms = kms.decrypt(&wrapped, &forged).unwrap();
    let key = mine.unwrap_data_key(&cms).unwrap();
    assert_eq!(key.expose().len(), 32);
}

/// Finding 5: the guess limit and stretching are not the host's to set.
#[test]
fn the_host_cannot_weaken_the_guess_limit_or_the_stretching() {
    use vettid_proto::platform::FromPlatform;
    let adv = Adversary::start(&[]);
    for tunables in [
        &["--pin-attempts", "1000"][..],
        &["--argon2-memory-kib", "8", "--argon2-passes", "1"],
        &["--idle-secs", "0", "--pin-attempts", "1000"],
    ] {
        let tunables: Vec<String> = tunables.iter().map(|s| s.to_string()).collect();
        match adv.host.request_launch(&tunables).unwrap() {
            FromPlatform::Refused(e) => assert!(e.contains("not a resource setting"), "{e}"),
            FromPlatform::Launched { .. } => panic!("launched with {tunables:?}"),
        }
    }
    // Nor by starting the enclave image itself with them.
    let out = std::process::Command::new(support::enclave_binary())
        .args(["--socket", "/nonexistent", "--pin-attempts", "1000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument --pin-attempts"));
    // The policy is in the measurement: another policy, another PCR2, same PCR0.
    let other = support::Platform::start_with(
        &adv.dir.path().join("other-platform"),
        &["--pin-attempts", "3"],
    );
    let pcrs = |dir: &std::path::Path| {
        let log = std::fs::read_to_string(dir.join("platform.log")).unwrap_or_default();
        let _ = log;
        let config = std::fs::read(dir.join("manifest/enclave-config.json")).unwrap();
        let parsed = vettid_proto::platform::EnclaveConfig::parse(&config).unwrap();
        (
            parsed.policy.pin_attempts,
            vettid_attest::Measurement::of_enclave(b"", &config).pcr2,
        )
    };
    let (a, pcr2_a) = pcrs(&adv.platform.dir);
    let (b, pcr2_b) = pcrs(&other.dir);
    assert_eq!((a, b), (10, 3));
    assert_ne!(pcr2_a, pcr2_b);
}

/// Finding 8: a vault has a size quota and a refused write changes nothing; versions per item
/// and feed events are kept up to their quotas.
#[tokio::test(flavor = "multi_thread")]
async fn a_vault_cannot_grow_past_its_quota_and_keeps_bounded_history() {
    let adv = Adversary::start(&[
        "--vault-quota-mib",
        "1",
        "--versions-per-item",
        "3",
        "--feed-rows",
        "100",
    ]);
    let alice = SecretBytes::random();
    let mut s = enrolled(&adv, "alice", &alice).await;
    let big = |i: usize| ItemContent {
        name: format!("big-{i}"),
        folder: None,
        tags: vec![],
        data: SecretData::Note {
            text: Secret::new(&"x".repeat(16_000)),
        },
        fields: vec![],
    };
    let mut ids = Vec::new();
    let refused_at = loop {
        match s.create_secret(big(ids.len())).await {
            Ok((item, v)) => ids.push((item.id, v)),
            Err(ClientError::Vault(VaultError::QuotaExceeded { limit_bytes })) => {
                assert_eq!(limit_bytes, 1 << 20);
                break ids.len();
            }
            Err(e) => panic!("{e}"),
        }
        assert!(ids.len() < 200, "no quota");
    };
    assert!(refused_at > 10);
    let last = ids.last().unwrap().1.version;
    let (_, v) = s.delete_secret(ids[0].0).await.unwrap();
    assert_eq!(
        v.version,
        last + 1,
        "the refused write left no version behind"
    );
    // In another vault: an update beyond the quota of versions drops the oldest.
    let bob = SecretBytes::random();
    let mut s = enrolled(&adv, "bob", &bob).await;
    let (item, _) = s.create_secret(note("small")).await.unwrap();
    for i in 0..120 {
        s.update_secret(item.id, None, note(&format!("small-{i}")))
            .await
            .unwrap();
    }
    let versions = s.secret_versions(item.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [119, 120, 121],
        "three versions kept"
    );
    // The audit chain keeps the newest 100 events, and still verifies from any kept one.
    let vettid_proto::feed::FeedReply::Events { events, more } = s
        .run(vettid_proto::feed::FeedOp::Sync { since: 0 })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!more);
    assert_eq!(events.len(), 100, "the newest 100 kept");
    vettid_proto::feed::verify_chain(events[0].seq, events[0].hash, &events[1..]).unwrap();
}

/// Finding 8: requests longer than the enclave accepts are refused unread, and it goes on.
#[test]
fn oversized_host_requests_are_refused_and_the_enclave_goes_on() {
    use vettid_proto::enclave::{EnclaveReply, ToEnclave};
    let adv = Adversary::start(&[]);
    let r = adv.host.call(&ToEnclave::App {
        member: "alice".into(),
        channel: vettid_proto::session::Channel::Session,
        now_ms: 0,
        body: vec![0; 5 << 20],
    });
    assert!(
        matches!(r, Err(VaultError::Invalid(Invalid::Malformed))),
        "{r:?}"
    );
    assert_eq!(adv.host.call(&ToEnclave::Ping), Ok(EnclaveReply::Pong));
}

/// Finding 7, beyond the SDK's immediate retries: every answer lost, then the app restarts.
/// The request kept (sealed) in the profile is sent again first, and the credential lives.
#[tokio::test(flavor = "multi_thread")]
async fn a_credential_survives_more_lost_replies_than_retries_and_an_app_restart() {
    use vettid_client::profile::Profile;
    use vettid_proto::credential::{CredentialOp, CredentialResult, CriticalKind};
    use vettid_proto::session::{AppOp, AppReply, Channel};
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let password = b"correct horse battery";
    let mut enrolling = adv.session("alice", &alice, Channel::Enroll).await.unwrap();
    let AppReply::Enrolled(enrolled) = enrolling
        .unchecked_call(AppOp::Enroll {
            pin: zeroize::Zeroizing::new(PIN.as_bytes().to_vec()),
            password_verifier: zeroize::Zeroizing::new(vettid_client::password_verifier(
                "alice", password,
            )),
            device_name: "phone".into(),
            device: support::adversary::binding("alice", &alice),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    let dir = adv.dir.path().join("app");
    {
        let mut profile = Profile::open_or_create(&dir).unwrap();
        profile.state.member_id = Some("alice".into());
        profile.state.identity_public_key = Some(hex::encode(enrolled.identity_public_key));
        profile.save().unwrap();
        profile
            .write_secret(vettid_client::credential::BLOB, &enrolled.credential)
            .unwrap();
        let mut s = adv
            .unlocked_with("alice", &alice, PIN, &mut profile)
            .await
            .unwrap();
        adv.host.drop_app_replies(100);
        let lost = s
            .credential(
                password,
                CredentialOp::Add {
                    kind: CriticalKind::SeedPhrase,
                    label: "wallet".into(),
                    value: Secret::new("marker-pending abandon"),
                },
            )
            .await;
        assert!(lost.is_err(), "every answer was lost");
        adv.host.drop_app_replies(0);
        let pending = std::fs::read(dir.join(vettid_client::credential::PENDING)).unwrap();
        assert!(
            !pending.windows(14).any(|w| w == b"marker-pending"),
            "the pending request is sealed"
        );
    }
    // The app restarts: a new process, a new session.
    let mut profile = Profile::open_or_create(&dir).unwrap();
    let mut s = adv
        .unlocked_with("alice", &alice, PIN, &mut profile)
        .await
        .unwrap();
    let CredentialResult::Listed(listed) = s
        .credential(password, CredentialOp::List)
        .await
        .expect("the credential survived")
    else {
        panic!()
    };
    assert_eq!(
        listed.iter().map(|m| m.label.as_str()).collect::<Vec<_>>(),
        ["wallet"]
    );
    assert!(!dir.join(vettid_client::credential::PENDING).exists());
}

/// Issue 11, finding 2: the vault registers a device key only with its holder's proof for
/// this very session, and the enclave attests to both keys and the vault's identity, which
/// the API requires before it registers the device. A binding replayed from another session, or a key claimed without
/// its proof, is refused and creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_key_is_registered_only_with_its_holders_proof_for_this_session() {
    use vettid_proto::auth::{DeviceBinding, enrolled_device_binding};
    use vettid_proto::session::{AppOp, AppReply, Channel};
    use zeroize::Zeroizing;
    let adv = Adversary::start(&[]);
    let alice = SecretBytes::random();
    let other = SecretBytes::random();
    let enroll = |device: DeviceBinding| AppOp::Enroll {
        pin: Zeroizing::new(PIN.as_bytes().to_vec()),
        password_verifier: Zeroizing::new(VERIFIER),
        device_name: "phone".into(),
        device,
    };
    let replayed = binding("alice", &other);
    let mut claimed = binding("alice", &alice);
    claimed.device_key = replayed.device_key;
    let mut for_bob = binding("bob", &alice);
    for_bob.device_key = binding("alice", &alice).device_key;
    for forged in [replayed, claimed, for_bob] {
        let mut session = adv.session("alice", &alice, Channel::Enroll).await.unwrap();
        match session.unchecked_call(enroll(forged)).await {
            Err(ClientError::Vault(VaultError::Invalid(Invalid::DeviceBinding))) => {}
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    assert!(
        adv.host.store().names("vaults/alice/").is_empty(),
        "no vault was created"
    );

    let mut session = adv.session("alice", &alice, Channel::Enroll).await.unwrap();
    let proof = binding("alice", &alice);
    let AppReply::Enrolled(enrolled) = session.unchecked_call(enroll(proof.clone())).await.unwrap()
    else {
        panic!("expected Enrolled");
    };
    // The enclave's document binds the member, this session's key, the proven device key
    // and the new vault's identity, under the platform's root.
    let root = std::fs::read_to_string(adv.platform.dir.join("dev-attestor/root.pem")).unwrap();
    let root = vettid_attest::TrustedRoot::from_pem(&root).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let doc = vettid_attest::verify(
        &enrolled.device_attestation,
        &vettid_attest::Policy::new(&root, now),
    )
    .expect("a document of the enclave's own device");
    let session_key = vettid_crypto::noise::public_key(&alice);
    let bound = |device: &[u8; 32]| {
        enrolled_device_binding("alice", &session_key, device, &enrolled.identity_public_key)
            .to_vec()
    };
    assert_eq!(doc.user_data, Some(bound(&proof.device_key)));
    assert_ne!(
        doc.user_data,
        Some(bound(&binding("alice", &other).device_key))
    );
    assert_eq!(
        (doc.nonce, doc.public_key),
        (None, None),
        "unlike an app's document"
    );
}
