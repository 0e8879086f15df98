//! Personal data, sharing settings, the public profile and the photo, end to end against the
//! real `vettid up` stack: the SDK and the `vettid app personal` command.

mod support;

use support::journey::{UpStack, stack_files_containing, vettid_with};
use vettid_client::ClientError;
use vettid_client::profile::Profile;
use vettid_client::vault::Unlocked;
use vettid_proto::enclave::VaultError;
use vettid_proto::profile::{
    Category, Field, Link, MAX_BATCH, MAX_FIELD_VALUE, MAX_LINKS, MAX_PHOTO, NewField, ProfileOp,
    PublicSettings, Secret, Select, ShareTarget, verify_public_profile,
};
use vettid_proto::session::AppOp;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0";

async fn unlocked(stack: &UpStack, name: &str) -> Unlocked<Profile> {
    stack.unlocked(name, "2468").await
}

fn field(key: &str, value: &str, category: Category, sensitive: bool) -> NewField {
    NewField {
        key: key.into(),
        value: Secret::new(value),
        category,
        sensitive,
        order: 0,
    }
}

fn keys(fields: &[Field]) -> Vec<&str> {
    fields.iter().map(|f| f.key.as_str()).collect()
}

fn is_bad<T: std::fmt::Debug>(r: Result<T, ClientError>) -> bool {
    matches!(r, Err(ClientError::Vault(VaultError::Profile(_))))
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, ClientError>) -> bool {
    matches!(r, Err(ClientError::Vault(VaultError::NotFound)))
}

/// The member id and the vault identity key, from `whoami`.
async fn identity(c: &mut Unlocked<Profile>) -> (String, [u8; 32]) {
    let who = c.whoami().await.unwrap();
    (who.member, who.identity_public_key)
}

/// Set (upsert, many at once), get by keys / namespace / category, list with and without
/// reveal, delete; every bad request is typed and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn fields_are_set_read_listed_deleted_and_bad_requests_change_nothing() {
    let stack = UpStack::start();
    let mut c = unlocked(&stack, "pia").await;
    let s = &mut c;
    let mut tax = field("financial.tax-id", "TX-123", Category::Financial, true);
    tax.order = -1;
    let v = s
        .set_fields(vec![
            field("contact.email", "pia@example.org", Category::Contact, false),
            field("address.home.city", "Lyon", Category::Address, false),
            field("address.home.street", "1 rue X", Category::Address, false),
            field("address.work.city", "Paris", Category::Address, false),
            tax,
        ])
        .await
        .unwrap();
    // The SDK checked the change's signed version and recorded it in the profile.
    assert_eq!(s.seen().state.highest_version, v.version);
    // Upsert: a second set replaces the value and metadata.
    s.set_fields(vec![field(
        "contact.email",
        "pia@example.com",
        Category::Contact,
        false,
    )])
    .await
    .unwrap();
    let got = s
        .get_fields(Select::Keys(vec!["contact.email".into()]))
        .await
        .unwrap();
    assert_eq!(got[0].value.as_ref().unwrap().expose(), "pia@example.com");
    assert_eq!(
        keys(
            &s.get_fields(Select::Namespace("address.home".into()))
                .await
                .unwrap()
        ),
        ["address.home.city", "address.home.street"]
    );
    assert_eq!(
        keys(
            &s.get_fields(Select::Category(Category::Address))
                .await
                .unwrap()
        ),
        [
            "address.home.city",
            "address.home.street",
            "address.work.city"
        ]
    );
    // A get by key returns even a sensitive value; a listing hides it unless revealed.
    let tax = s
        .get_fields(Select::Keys(vec!["financial.tax-id".into()]))
        .await
        .unwrap();
    assert_eq!(tax[0].value.as_ref().unwrap().expose(), "TX-123");
    let listed = s.list_fields(false).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert_eq!(listed[0].key, "financial.tax-id", "sorted by order first");
    assert!(listed[0].sensitive && listed[0].value.is_none());
    assert!(listed[1..].iter().all(|f| f.value.is_some()));
    let revealed = s.list_fields(true).await.unwrap();
    assert!(revealed.iter().all(|f| f.value.is_some()));
    assert_eq!(format!("{:?}", revealed[0].value), "Some(Secret(..))");

    // Bad requests: typed errors, and the fields stay exactly as they were.
    let before = s.list_fields(true).await.unwrap();
    let too_many: Vec<_> = (0..=MAX_BATCH)
        .map(|i| field(&format!("other.k{i}"), "v", Category::Other, false))
        .collect();
    let long = "v".repeat(MAX_FIELD_VALUE + 1);
    for bad in [
        vec![field("email", "no namespace", Category::Contact, false)],
        vec![field(
            "Contact.Email",
            "upper case",
            Category::Contact,
            false,
        )],
        vec![field("a..b", "empty segment", Category::Contact, false)],
        vec![field(
            &format!("x.{}", "k".repeat(128)),
            "v",
            Category::Other,
            false,
        )],
        vec![field("other.long", &long, Category::Other, false)],
        // One bad field spoils the batch: the good one is not stored either.
        vec![
            field("other.good", "v", Category::Other, false),
            field("bad key.x", "v", Category::Other, false),
        ],
        vec![
            field("other.dup", "1", Category::Other, false),
            field("other.dup", "2", Category::Other, false),
        ],
        too_many,
        vec![],
    ] {
        let r = s.set_fields(bad).await;
        assert!(
            matches!(r, Err(ClientError::Vault(VaultError::Profile(_)))),
            "{r:?}"
        );
    }
    assert!(is_not_found(
        s.get_fields(Select::Keys(vec![
            "contact.email".into(),
            "contact.fax".into()
        ]))
        .await
    ));
    assert!(is_bad(
        s.get_fields(Select::Keys(vec!["nodot".into()])).await
    ));
    assert!(is_bad(s.get_fields(Select::Keys(vec![])).await));
    assert!(is_bad(s.get_fields(Select::Namespace("A B".into())).await));
    assert!(is_not_found(
        s.delete_fields(vec!["contact.email".into(), "contact.fax".into()])
            .await
    ));
    assert!(is_bad(s.delete_fields(vec!["nodot".into()]).await));
    assert!(is_bad(s.delete_fields(vec![]).await));
    assert_eq!(s.list_fields(true).await.unwrap(), before);

    // The largest batch (MAX_BATCH fields, within one message) is accepted, then removed.
    let full: Vec<_> = (0..MAX_BATCH)
        .map(|i| {
            field(
                &format!("other.k{i:02}"),
                &"v".repeat(700),
                Category::Other,
                false,
            )
        })
        .collect();
    s.set_fields(full).await.unwrap();
    assert_eq!(
        s.get_fields(Select::Category(Category::Other))
            .await
            .unwrap()
            .len(),
        MAX_BATCH
    );
    s.delete_fields((0..MAX_BATCH).map(|i| format!("other.k{i:02}")).collect())
        .await
        .unwrap();
    assert_eq!(s.list_fields(true).await.unwrap(), before);

    // Delete: gone from gets and listings.
    s.delete_fields(vec!["address.work.city".into(), "contact.email".into()])
        .await
        .unwrap();
    assert!(is_not_found(
        s.get_fields(Select::Keys(vec!["contact.email".into()]))
            .await
    ));
    assert_eq!(
        keys(&s.list_fields(false).await.unwrap()),
        [
            "financial.tax-id",
            "address.home.city",
            "address.home.street"
        ]
    );
}

/// Defaults per category, per-connection overrides by category and by field, and the
/// effective view; a sensitive field is shared only by a field override.
#[tokio::test(flavor = "multi_thread")]
async fn sharing_follows_defaults_and_overrides_and_never_leaks_sensitive_fields() {
    let stack = UpStack::start();
    let mut c = unlocked(&stack, "quinn").await;
    let s = &mut c;
    s.set_fields(vec![
        field("contact.email", "q@example.org", Category::Contact, false),
        field("contact.phone", "+33 1", Category::Contact, false),
        field("contact.private", "secret line", Category::Contact, true),
        field("health.blood", "O+", Category::Health, true),
        field("identity.name", "Quinn", Category::Identity, false),
    ])
    .await
    .unwrap();
    // Nothing is shared until the member says so.
    assert!(
        s.sharing_defaults()
            .await
            .unwrap()
            .iter()
            .all(|(_, share)| !share)
    );
    assert!(s.effective_sharing("conn-a").await.unwrap().is_empty());
    // A default shares the category's non-sensitive fields with every connection.
    s.set_sharing_default(Category::Contact, true)
        .await
        .unwrap();
    assert!(
        s.sharing_defaults()
            .await
            .unwrap()
            .contains(&(Category::Contact, true))
    );
    let contact = ["contact.email", "contact.phone"];
    assert_eq!(s.effective_sharing("conn-a").await.unwrap(), contact);
    assert_eq!(s.effective_sharing("conn_b").await.unwrap(), contact);
    // A category override does not reveal sensitive fields either.
    s.set_sharing_override("conn-a", ShareTarget::Category(Category::Health), true)
        .await
        .unwrap();
    assert_eq!(s.effective_sharing("conn-a").await.unwrap(), contact);
    // Only a field override does, and only for that connection.
    s.set_sharing_override("conn-a", ShareTarget::Field("health.blood".into()), true)
        .await
        .unwrap();
    // A field override can also withhold what the default shares.
    s.set_sharing_override("conn-a", ShareTarget::Field("contact.phone".into()), false)
        .await
        .unwrap();
    // A category override can share what the default does not.
    s.set_sharing_override("conn-a", ShareTarget::Category(Category::Identity), true)
        .await
        .unwrap();
    assert_eq!(
        s.effective_sharing("conn-a").await.unwrap(),
        ["contact.email", "health.blood", "identity.name"]
    );
    assert_eq!(s.effective_sharing("conn_b").await.unwrap(), contact);
    assert_eq!(s.sharing_overrides("conn-a").await.unwrap().len(), 4);
    // Clearing an override restores the default.
    s.clear_sharing_override("conn-a", ShareTarget::Field("contact.phone".into()))
        .await
        .unwrap();
    assert!(
        s.effective_sharing("conn-a")
            .await
            .unwrap()
            .contains(&"contact.phone".to_owned())
    );
    // Errors: bad connection ids, unknown fields, absent overrides; nothing changes.
    let before = (
        s.sharing_overrides("conn-a").await.unwrap(),
        s.effective_sharing("conn-a").await.unwrap(),
        s.sharing_defaults().await.unwrap(),
    );
    for bad in ["", "has space", "dots.are.not.ids", &"c".repeat(65)] {
        assert!(is_bad(s.effective_sharing(bad).await), "{bad:?}");
        assert!(is_bad(
            s.set_sharing_override(bad, ShareTarget::Category(Category::Other), true)
                .await
        ));
    }
    assert!(is_not_found(
        s.set_sharing_override("conn-a", ShareTarget::Field("contact.fax".into()), true)
            .await
    ));
    assert!(is_bad(
        s.set_sharing_override("conn-a", ShareTarget::Field("nodot".into()), true)
            .await
    ));
    assert!(is_not_found(
        s.clear_sharing_override("conn-a", ShareTarget::Category(Category::Other))
            .await
    ));
    assert_eq!(
        (
            s.sharing_overrides("conn-a").await.unwrap(),
            s.effective_sharing("conn-a").await.unwrap(),
            s.sharing_defaults().await.unwrap(),
        ),
        before
    );
    // Deleting a field removes its overrides: a new field of the same key starts unshared.
    s.delete_fields(vec!["health.blood".into()]).await.unwrap();
    s.set_fields(vec![field("health.blood", "A-", Category::Health, true)])
        .await
        .unwrap();
    assert!(
        !s.effective_sharing("conn-a")
            .await
            .unwrap()
            .contains(&"health.blood".to_owned())
    );
}

/// Publish signs the profile with the vault identity; a peer verifies it; any flipped byte
/// or another key fails; sensitive and unknown fields cannot be published.
#[tokio::test(flavor = "multi_thread")]
async fn the_public_profile_is_signed_by_the_vault_and_tamper_evident() {
    let stack = UpStack::start();
    let mut c = unlocked(&stack, "rosa").await;
    let (member, me) = identity(&mut c).await;
    let s = &mut c;
    s.set_fields(vec![
        field(
            "contact.email",
            "rosa@example.org",
            Category::Contact,
            false,
        ),
        field("identity.passport", "P123", Category::Identity, true),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.public_settings().await.unwrap(),
        PublicSettings::default()
    );
    let settings = PublicSettings {
        display_name: "Rosa".into(),
        bio: "Gardener".into(),
        links: vec![Link {
            label: "web".into(),
            url: "https://rosa.example".into(),
        }],
        fields: vec!["contact.email".into()],
    };
    s.set_public_settings(settings.clone()).await.unwrap();
    assert_eq!(s.public_settings().await.unwrap(), settings);
    let (signed, p, _) = s.publish_profile(&me).await.unwrap();
    assert_eq!(
        (p.member.as_str(), p.version, p.display_name.as_str()),
        (member.as_str(), 1, "Rosa")
    );
    assert_eq!(p.fields.len(), 1);
    assert_eq!(p.fields[0].value, "rosa@example.org");
    assert_eq!(signed.identity, me);
    assert_eq!(
        verify_public_profile(&signed.payload, &signed.signature, &me),
        Some(p)
    );
    for i in 0..signed.payload.len() {
        let mut tampered = signed.payload.clone();
        tampered[i] ^= 0x01;
        assert!(verify_public_profile(&tampered, &signed.signature, &me).is_none());
    }
    let mut sig = signed.signature.clone();
    sig[0] ^= 0x80;
    assert!(verify_public_profile(&signed.payload, &sig, &me).is_none());
    assert!(verify_public_profile(&signed.payload, &signed.signature, &[7; 32]).is_none());
    // The SDK refuses a profile signed by a key other than the one it knows.
    assert!(matches!(
        s.publish_profile(&[9; 32]).await,
        Err(ClientError::Protocol(_))
    ));
    // Each publication has a higher counter.
    let (_, p2, _) = s.publish_profile(&me).await.unwrap();
    assert!(p2.version > 1);
    // Refused settings change nothing.
    let mut too_many_links = settings.clone();
    too_many_links.links = vec![settings.links[0].clone(); MAX_LINKS + 1];
    let mut sensitive = settings.clone();
    sensitive.fields = vec!["identity.passport".into()];
    let mut long_name = settings.clone();
    long_name.display_name = "n".repeat(200);
    for bad in [too_many_links, sensitive, long_name] {
        assert!(is_bad(s.set_public_settings(bad).await));
    }
    let mut unknown = settings.clone();
    unknown.fields = vec!["contact.fax".into()];
    assert!(is_not_found(s.set_public_settings(unknown).await));
    assert_eq!(s.public_settings().await.unwrap(), settings);
    // A field made sensitive after being chosen is not published.
    s.set_fields(vec![field(
        "contact.email",
        "rosa@example.org",
        Category::Contact,
        true,
    )])
    .await
    .unwrap();
    let (_, p3, _) = s.publish_profile(&me).await.unwrap();
    assert!(p3.fields.is_empty());
}

/// Photo: JPEG and PNG round trip; other formats, empty and oversized images are refused
/// and change nothing; delete.
#[tokio::test(flavor = "multi_thread")]
async fn the_photo_round_trips_and_only_small_jpegs_and_pngs_are_accepted() {
    let stack = UpStack::start();
    let mut c = unlocked(&stack, "sami").await;
    let s = &mut c;
    assert!(is_not_found(s.photo().await));
    assert!(is_not_found(s.delete_photo().await));
    // The largest accepted photo still fits one session message, both ways.
    let mut png = PNG.to_vec();
    png.extend((0..(MAX_PHOTO - PNG.len()) as u32).map(|i| (i * 7) as u8));
    s.set_photo(png.clone()).await.unwrap();
    let got = s.photo().await.unwrap();
    assert_eq!((got.kind.mime(), &got.bytes), ("image/png", &png));
    let jpeg = [JPEG, b"small jpeg"].concat();
    s.set_photo(jpeg.clone()).await.unwrap();
    assert_eq!(s.photo().await.unwrap().bytes, jpeg);
    let mut big = PNG.to_vec();
    big.resize(MAX_PHOTO + 1, 0);
    for bad in [
        b"GIF89a....".to_vec(),
        b"".to_vec(),
        b"<svg/>".to_vec(),
        big,
    ] {
        assert!(is_bad(s.set_photo(bad).await));
    }
    assert_eq!(s.photo().await.unwrap().bytes, jpeg, "unchanged");
    s.delete_photo().await.unwrap();
    assert!(is_not_found(s.photo().await));
}

/// A session of the same device that did not give the PIN reaches none of it.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_without_the_pin_gets_not_unlocked() {
    let stack = UpStack::start();
    let mut c = unlocked(&stack, "tao").await;
    c.set_fields(vec![field(
        "contact.email",
        "t@x.org",
        Category::Contact,
        false,
    )])
    .await
    .unwrap();
    // The SDK gives a session without the PIN no personal-data methods at all; the enclave
    // refuses the raw operations too.
    let mut other = vettid_client::app::connect(c.seen()).await.unwrap();
    for op in [
        ProfileOp::List {
            after: None,
            reveal: true,
        },
        ProfileOp::Set(vec![field("contact.x", "v", Category::Contact, false)]),
        ProfileOp::Effective {
            connection: "conn".into(),
        },
        ProfileOp::Publish,
        ProfileOp::GetPhoto,
    ] {
        let r = other.session.unchecked_call(AppOp::Profile(op)).await;
        assert!(
            matches!(r, Err(ClientError::Vault(VaultError::NotUnlocked))),
            "{r:?}"
        );
    }
    // And the unlocked session still sees exactly its one field.
    assert_eq!(c.list_fields(false).await.unwrap().len(), 1);
}

/// Zero knowledge: markers planted in field values (sensitive or not), keys, the public
/// profile and the photo appear in no file of the operator's data.
#[tokio::test(flavor = "multi_thread")]
async fn no_personal_data_appears_outside_the_enclave() {
    let stack = UpStack::start();
    let mut c = unlocked(&stack, "uma").await;
    let (_, me) = identity(&mut c).await;
    let s = &mut c;
    s.set_fields(vec![
        field(
            "contact.email",
            "marker-email-4b1f",
            Category::Contact,
            false,
        ),
        field(
            "health.marker-key-77aa",
            "marker-health-90c2",
            Category::Health,
            true,
        ),
    ])
    .await
    .unwrap();
    s.set_sharing_default(Category::Contact, true)
        .await
        .unwrap();
    s.set_sharing_override(
        "marker-conn-3e5d",
        ShareTarget::Category(Category::Other),
        true,
    )
    .await
    .unwrap();
    s.set_public_settings(PublicSettings {
        display_name: "marker-name-6d0a".into(),
        bio: "marker-bio-12fe".into(),
        links: vec![],
        fields: vec!["contact.email".into()],
    })
    .await
    .unwrap();
    s.publish_profile(&me).await.unwrap();
    let photo = [PNG, b"marker-photo-c4d7".as_slice()].concat();
    s.set_photo(photo).await.unwrap();
    // Many small writes so that a snapshot of the vault is taken too.
    for i in 0..40 {
        s.set_fields(vec![field(
            "other.counter",
            &format!("marker-email-4b1f {i}"),
            Category::Other,
            false,
        )])
        .await
        .unwrap();
    }
    drop(c);
    stack_files_containing(
        &stack.data(),
        &[
            b"marker-email-4b1f",
            b"marker-key-77aa",
            b"marker-health-90c2",
            b"marker-conn-3e5d",
            b"marker-name-6d0a",
            b"marker-bio-12fe",
            b"marker-photo-c4d7",
        ],
    );
}

/// `vettid app personal …`, each command its own process (and its own unlocked session).
#[tokio::test(flavor = "multi_thread")]
async fn the_app_command_manages_personal_data() {
    let stack = UpStack::start();
    let profile = stack.enrolled("vic", "1357").await;
    let dir = profile.dir().to_path_buf();
    drop(profile);
    let p = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let all: Vec<&str> = ["app", "--profile", p, "personal", "--pin-env", "VIC_PIN"]
            .iter()
            .chain(args)
            .copied()
            .collect();
        vettid_with(
            &all,
            &[
                ("VIC_PIN", "1357"),
                ("VIC_EMAIL", "vic@example.org"),
                ("VIC_IBAN", "FR76-secret-iban"),
            ],
        )
    };
    let (ok, out) = run(&[
        "set",
        "contact.email",
        "--value-env",
        "VIC_EMAIL",
        "--category",
        "contact",
    ]);
    assert!(ok && out.contains("✓ set contact.email"), "{out}");
    let (ok, out) = run(&[
        "set",
        "financial.iban",
        "--value-env",
        "VIC_IBAN",
        "--category",
        "financial",
        "--sensitive",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["get", "contact.email"]);
    assert!(ok && out.contains("vic@example.org"), "{out}");
    let (ok, out) = run(&["list"]);
    assert!(
        ok && out.contains("vic@example.org")
            && out.contains("financial.iban")
            && !out.contains("FR76-secret-iban")
            && out.contains("2 field(s)"),
        "{out}"
    );
    let (ok, out) = run(&["list", "--reveal"]);
    assert!(ok && out.contains("FR76-secret-iban"), "{out}");
    let (ok, out) = run(&["share-default", "contact", "on"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["share", "conn-1", "financial.iban", "on"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["effective", "conn-1"]);
    assert!(
        ok && out.contains("contact.email") && out.contains("financial.iban"),
        "{out}"
    );
    let (ok, out) = run(&["effective", "conn-2"]);
    assert!(ok && !out.contains("financial.iban"), "{out}");
    let (ok, out) = run(&[
        "publish",
        "--display-name",
        "Vic",
        "--field",
        "contact.email",
        "--link",
        "web=https://vic.example",
    ]);
    assert!(
        ok && out.contains("✓ signature verified")
            && out.contains("display name  Vic")
            && out.contains("vic@example.org"),
        "{out}"
    );
    let img = dir.join("me.png");
    std::fs::write(&img, [PNG, b"pixels"].concat()).unwrap();
    let (ok, out) = run(&["photo-set", img.to_str().unwrap()]);
    assert!(ok, "{out}");
    let back = dir.join("back.png");
    let (ok, out) = run(&["photo-get", back.to_str().unwrap()]);
    assert!(ok && out.contains("image/png"), "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&img).unwrap());
    let (ok, out) = run(&["photo-delete"]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["delete", "contact.email"]);
    assert!(ok && out.contains("deleted 1"), "{out}");
    // Errors are reported, not hidden.
    let (ok, out) = run(&["get", "contact.email"]);
    assert!(!ok, "{out}");
    let (ok, out) = run(&["set", "nodot", "--value-env", "VIC_EMAIL"]);
    assert!(!ok && out.contains("namespace"), "{out}");
    let (ok, out) = run(&[
        "set",
        "x.y",
        "--value-env",
        "VIC_EMAIL",
        "--category",
        "pets",
    ]);
    assert!(!ok && out.contains("unknown category"), "{out}");
    std::fs::write(&img, b"GIF89a").unwrap();
    let (ok, out) = run(&["photo-set", img.to_str().unwrap()]);
    assert!(!ok && out.contains("JPEG or a PNG"), "{out}");
}

/// A field shared with a connection while it was not sensitive is withheld once it becomes
/// sensitive: sharing it again takes a new, explicit override.
#[tokio::test(flavor = "multi_thread")]
async fn a_field_that_becomes_sensitive_loses_its_earlier_sharing() {
    let stack = UpStack::start();
    let mut c = unlocked(&stack, "rosa").await;
    let s = &mut c;
    s.set_fields(vec![field(
        "contact.phone",
        "+33 2",
        Category::Contact,
        false,
    )])
    .await
    .unwrap();
    s.set_sharing_override("conn-a", ShareTarget::Field("contact.phone".into()), true)
        .await
        .unwrap();
    assert_eq!(
        s.effective_sharing("conn-a").await.unwrap(),
        ["contact.phone"]
    );
    s.set_fields(vec![field(
        "contact.phone",
        "+33 2",
        Category::Contact,
        true,
    )])
    .await
    .unwrap();
    assert!(s.effective_sharing("conn-a").await.unwrap().is_empty());
    s.set_sharing_override("conn-a", ShareTarget::Field("contact.phone".into()), true)
        .await
        .unwrap();
    assert_eq!(
        s.effective_sharing("conn-a").await.unwrap(),
        ["contact.phone"]
    );
}
