//! The key directory: made once, private, never regenerated; inputs validated.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use vettid_nats::{MemberScope, NatsError, Setup};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn account_claims(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &data_encoding::BASE64URL_NOPAD
            .decode(part.as_bytes())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn setup_is_made_once_and_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nats/auth");
    let first = Setup::create_or_load(&dir).unwrap();
    let second = Setup::create_or_load(&dir).unwrap();
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
    for creds in [first.host_creds(), first.api_creds(), first.sys_creds()] {
        assert!(read(&creds).contains("-----BEGIN USER NKEY SEED-----"));
    }
    assert_eq!(read(&first.host_creds()), read(&second.host_creds()));
    assert_eq!(mode(&dir), 0o700);
    let debug = format!("{first:?} {:?}", first.issuer().unwrap());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        for seed in read(&path).lines().filter(|l| l.starts_with('S')) {
            assert!(!debug.contains(seed.trim()), "a seed in Debug: {debug}");
        }
    }
    // No temporary directory is left beside it.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("nats")).unwrap().count(),
        1
    );
}

#[test]
fn racing_creators_end_up_with_the_same_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("auth");
    let creds: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| read(&Setup::create_or_load(&dir).unwrap().host_creds())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(creds.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn an_incomplete_directory_is_refused_not_regenerated() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::create_or_load(tmp.path()).unwrap();
    std::fs::remove_file(setup.host_creds()).unwrap();
    let err = Setup::create_or_load(tmp.path()).unwrap_err();
    assert!(matches!(err, NatsError::Invalid(_)), "{err}");
    assert!(!setup.host_creds().exists());
}

#[test]
fn revocations_persist_and_each_account_jwt_is_newer() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Setup::create_or_load(tmp.path()).unwrap();
    let before = account_claims(&setup.issuer().unwrap().account_jwt().unwrap());
    let key = nkeys::KeyPair::new_user().public_key();
    let revoked = setup
        .issuer()
        .unwrap()
        .revoke(std::slice::from_ref(&key))
        .unwrap();
    let again = Setup::create_or_load(tmp.path()).unwrap();
    let now = account_claims(&again.issuer().unwrap().account_jwt().unwrap());
    assert_eq!(now, account_claims(&revoked));
    assert!(now["nats"]["revocations"][&key].is_u64());
    assert!(now["iat"].as_u64() > before["iat"].as_u64());
    assert_eq!(now["nats"]["limits"]["disk_storage"], -1);
    assert_eq!(now["nats"]["limits"]["consumer"], -1);
}

/// Revocations only ever refuse JWTs issued before them; once every such JWT has expired the
/// entry is dropped (an hour later), so renewals and cancelled enrollments cannot grow the
/// account JWT past what the server accepts.
#[test]
fn revocations_are_kept_while_a_jwt_they_refuse_can_live_and_no_longer() {
    use vettid_nats::Revocation;
    let tmp = tempfile::tempdir().unwrap();
    let issuer = Setup::create_or_load(tmp.path()).unwrap().issuer().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let key = || nkeys::KeyPair::new_user().public_key();
    let (spent, live, later) = (key(), key(), key());
    let entry = |key: &str, issued_until: u64, needed_until: u64| Revocation {
        key: key.to_owned(),
        issued_until,
        needed_until,
    };
    let jwt = issuer
        .revoke_issued_until(&[
            // an enrollment JWT that expired two hours ago
            entry(&spent, now - 3 * 3600, now - 2 * 3600),
            entry(&live, now - 60, now + 600),
            entry(&later, now - 5, now + 86_400),
        ])
        .unwrap();
    let revocations = &account_claims(&jwt)["nats"]["revocations"];
    assert!(revocations.get(&spent).is_none(), "{revocations}");
    assert_eq!(revocations[&live], now - 60);
    // A key's time only moves forward.
    let jwt = issuer
        .revoke_issued_until(&[entry(&later, now - 60, now)])
        .unwrap();
    assert_eq!(account_claims(&jwt)["nats"]["revocations"][&later], now - 5);
    // And no JWT may outlive the longest window a plain revocation keeps.
    let week = vettid_nats::MAX_MEMBER_JWT_LIFETIME.as_secs();
    assert!(
        issuer
            .member_jwt(
                "a-1",
                &key(),
                MemberScope::Member,
                Duration::from_secs(week + 1)
            )
            .is_err()
    );
}

#[test]
fn bad_member_ids_and_keys_are_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    let issuer = Setup::create_or_load(tmp.path()).unwrap().issuer().unwrap();
    let user = nkeys::KeyPair::new_user();
    let hour = Duration::from_secs(3600);
    let long = "a".repeat(65);
    for member in [
        "",
        "Alice",
        "a.b",
        "a*",
        ">",
        "a b",
        "é",
        "_INBOX",
        long.as_str(),
    ] {
        let r = issuer.member_jwt(member, &user.public_key(), MemberScope::Member, hour);
        assert!(matches!(r, Err(NatsError::Invalid(_))), "{member:?}");
        assert!(vettid_nats::member_consumer_config(member).is_err());
    }
    assert!(
        issuer
            .member_jwt(
                &"a".repeat(64),
                &user.public_key(),
                MemberScope::Member,
                hour
            )
            .is_ok()
    );
    let mut corrupted = user.public_key();
    corrupted.replace_range(5..6, if &corrupted[5..6] == "A" { "B" } else { "A" });
    let account = nkeys::KeyPair::new_account().public_key();
    let seed = user.seed().unwrap();
    for key in ["", "U", corrupted.as_str(), account.as_str(), seed.as_str()] {
        let r = issuer.member_jwt("alice", key, MemberScope::Member, hour);
        assert!(matches!(r, Err(NatsError::Invalid(_))), "{key:?}");
        assert!(matches!(
            issuer.revoke(&[key.to_owned()]),
            Err(NatsError::Invalid(_))
        ));
    }
    let zero = issuer.member_jwt(
        "alice",
        &user.public_key(),
        MemberScope::Member,
        Duration::ZERO,
    );
    assert!(matches!(zero, Err(NatsError::Invalid(_))));
}
