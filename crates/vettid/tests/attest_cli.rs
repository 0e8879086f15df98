//! `vettid attest …` as an operator uses it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vettid-attest/tests/fixtures/nitro")
        .join(name)
}

fn vettid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vettid"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn refused_with(out: &Output, code: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.starts_with(&format!("invalid: {code}:")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn verify_fixture(extra: &[&str]) -> Output {
    let doc = fixture("attestation.cose");
    let root = fixture("aws-nitro-root-g1.pem");
    let mut args = vec!["attest", "verify", "--doc", s(&doc), "--root", s(&root)];
    args.extend_from_slice(extra);
    vettid(&args)
}

#[test]
fn the_real_nitro_document_verifies_at_its_time() {
    let out = verify_fixture(&["--at", "1736179685"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["module_id"], "i-0bee92034f3d60691-enc01943c5eaab3ad6a");
    assert_eq!(json["timestamp"], 1_736_179_625_472u64);
    assert_eq!(json["pcrs"].as_object().unwrap().len(), 16);
    assert_eq!(json["public_key"].as_str().unwrap().len(), 2 * 294);
    assert!(json.get("nonce").is_none() && json.get("user_data").is_none());
}

#[test]
fn the_real_nitro_document_is_refused_now_and_with_a_wrong_pcr() {
    refused_with(&verify_fixture(&[]), "expired");
    let zeros = "0".repeat(96);
    refused_with(
        &verify_fixture(&["--at", "1736179685", "--pcr", &format!("0={zeros}")]),
        "pcr-mismatch",
    );
    refused_with(
        &verify_fixture(&["--at", "1736179685", "--nonce", "00"]),
        "nonce-mismatch",
    );
}

#[test]
fn a_changed_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = std::fs::read(fixture("attestation.cose")).unwrap();
    doc[4000] ^= 0x20;
    let path = dir.path().join("doc.cose");
    std::fs::write(&path, doc).unwrap();
    let root = fixture("aws-nitro-root-g1.pem");
    let out = vettid(&[
        "attest",
        "verify",
        "--doc",
        s(&path),
        "--root",
        s(&root),
        "--at",
        "1736179685",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("invalid: "));
}

#[test]
fn dev_documents_verify_under_their_own_data_directory_only() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let enclave = dir.path().join("enclave.bin");
    std::fs::write(&enclave, b"pretend enclave").unwrap();
    let doc = dir.path().join("doc.cose");
    let out = vettid(&[
        "attest",
        "dev-attest",
        "--data-dir",
        s(&a),
        "--enclave",
        s(&enclave),
        "--nonce",
        "c0ffee",
        "--out",
        s(&doc),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_mode = std::fs::metadata(a.join("dev-attestor/root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let root_a = dir.path().join("a.pem");
    let root_b = dir.path().join("b.pem");
    for (data, pem) in [(&a, &root_a), (&b, &root_b)] {
        let out = vettid(&["attest", "dev-root", "--data-dir", s(data)]);
        assert!(out.status.success());
        std::fs::write(pem, &out.stdout).unwrap();
    }
    let measure = vettid(&["attest", "measure", "--enclave", s(&enclave)]);
    let m: serde_json::Value = serde_json::from_slice(&measure.stdout).unwrap();
    let pcr0 = format!("0={}", m["pcr0"].as_str().unwrap());

    let ok = vettid(&[
        "attest",
        "verify",
        "--doc",
        s(&doc),
        "--root",
        s(&root_a),
        "--nonce",
        "c0ffee",
        "--pcr",
        &pcr0,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(json["nonce"], "c0ffee");

    refused_with(
        &vettid(&["attest", "verify", "--doc", s(&doc), "--root", s(&root_b)]),
        "chain",
    );
    refused_with(
        &vettid(&[
            "attest",
            "verify",
            "--doc",
            s(&doc),
            "--root",
            s(&root_a),
            "--nonce",
            "c0ffef",
        ]),
        "nonce-mismatch",
    );
}

#[test]
fn manifests_are_built_signed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("v1.bin"), b"enclave v1").unwrap();
    std::fs::write(p("v2.bin"), b"enclave v2").unwrap();
    let keygen = vettid(&["attest", "manifest", "keygen", "--out", s(&p("key"))]);
    assert!(keygen.status.success());
    let public = String::from_utf8(keygen.stdout).unwrap().trim().to_owned();
    assert_eq!(public.len(), 64);

    let build = |id: &str, bin: &str, add_to: Option<&Path>, out: &str| {
        let mut args = vec![
            "attest",
            "manifest",
            "build",
            "--key",
            s(&p("key")).to_owned().leak(),
            "--enclave",
        ];
        args.push(s(&p(bin)).to_owned().leak());
        args.extend(["--id", id, "--out"]);
        args.push(s(&p(out)).to_owned().leak());
        if let Some(prev) = add_to {
            args.extend(["--add-to", s(prev).to_owned().leak()]);
        }
        vettid(&args)
    };
    assert!(build("r1", "v1.bin", None, "m1.json").status.success());
    let m2 = build("r2", "v2.bin", Some(&p("m1.json")), "m2.json");
    assert!(
        m2.status.success(),
        "{}",
        String::from_utf8_lossy(&m2.stderr)
    );

    let check = |manifest: &str, key: &str, enclave: &str| {
        vettid(&[
            "attest",
            "manifest",
            "verify",
            "--manifest",
            s(&p(manifest)),
            "--key",
            key,
            "--enclave",
            s(&p(enclave)),
        ])
    };
    let ok = check("m2.json", &public, "v1.bin");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(m["serial"], 2);
    assert_eq!(m["sets"][1]["current"], true);
    assert_eq!(m["sets"][0]["current"], false);
    assert!(check("m2.json", &public, "v2.bin").status.success());
    assert!(
        !check("m1.json", &public, "v2.bin").status.success(),
        "v2 is not in m1"
    );
    assert!(
        !check("m2.json", &"11".repeat(32), "v1.bin")
            .status
            .success(),
        "wrong key"
    );
    // A duplicate release name is refused.
    assert!(
        !build("r1", "v2.bin", Some(&p("m2.json")), "m3.json")
            .status
            .success()
    );
}
