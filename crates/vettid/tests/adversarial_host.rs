//! The enclave against a host that lies (`vettid_testkit::AdversarialHost`): every test runs
//! the real enclave process and the real SDK, and the host does exactly what a hostile
//! operator would. Each test is named for what the host must not achieve.

mod support;

use support::adversary::*;
use vettid_client::ClientError;
use vettid_crypto::SecretBytes;
use vettid_proto::enclave::{HostReply, ToHost, VaultError, VaultOp};
use vettid_proto::session::SessionError;
use vettid_testkit::Action;

fn is_alice(name: &str) -> bool {
    name.starts_with("vaults/alice/")
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

    adv.host.script(|req, _| match req {
        ToHost::List { prefix } if is_alice(prefix) => Action::Answer(HostReply::Names(vec![])),
        ToHost::PutCreate { name, .. } if is_alice(name) => Action::Answer(HostReply::Created),
        ToHost::Get { name } if is_alice(name) => Action::Answer(HostReply::Object(None)),
        _ => Action::Honest,
    });
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
    adv.host.script(|req, _| match req {
        ToHost::List { prefix } if is_alice(prefix) => Action::Answer(HostReply::Names(vec![])),
        ToHost::PutCreate { name, .. } if is_alice(name) => Action::Answer(HostReply::Created),
        ToHost::Get { name } if is_alice(name) => Action::Answer(HostReply::Object(None)),
        _ => Action::Honest,
    });
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
    adv.host.script(|req, _| match req {
        ToHost::List { prefix } if is_alice(prefix) => Action::Answer(HostReply::Names(vec![])),
        ToHost::PutCreate { name, .. } if is_alice(name) => Action::Answer(HostReply::Created),
        ToHost::Get { name } if is_alice(name) => Action::Answer(HostReply::Object(None)),
        _ => Action::Honest,
    });
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
        let (mut s, _) = adv.unlocked("alice", &alice, PIN).await.unwrap();
        s.call(vettid_proto::session::AppOp::Lock).await.unwrap();
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

    match adv.unlocked_after("alice", &alice, PIN, &seen).await {
        Err(ClientError::Vault(VaultError::RolledBack { .. })) => {}
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(v) => panic!("the fork at version {} went unnoticed", v.version),
    }
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
    // The old blob with another request, or with another operation, is stale: not a guess.
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
        attempts_left(s.call(AppOp::Status).await.unwrap()),
        10,
        "nothing counted as a wrong password"
    );
}
