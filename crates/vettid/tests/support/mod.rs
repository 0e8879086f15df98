//! A dev platform, a host and its enclave as real processes, for tests.
#![allow(dead_code, unreachable_pub)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vettid_host::control::Client;
use vettid_proto::enclave::{EnclaveReply, ToEnclave, VaultError, VaultOp};

/// Cheapest Argon2id the enclave accepts, so tests unlock quickly (a policy setting: it goes
/// into the enclave's measured configuration, through the platform).
pub const FAST_ARGON: [&str; 4] = ["--argon2-memory-kib", "19456", "--argon2-passes", "2"];

/// Flags that are enclave policy (the platform's, measured), not host resource settings.
const POLICY: &[&str] = &[
    "--pin-attempts",
    "--argon2-memory-kib",
    "--argon2-passes",
    "--vault-quota-mib",
    "--versions-per-item",
    "--feed-rows",
];

/// Splits enclave flags into (policy, resources).
pub fn split_policy<'a>(args: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut policy, mut resources) = (Vec::new(), Vec::new());
    for pair in args.chunks(2) {
        if POLICY.contains(&pair[0]) {
            policy.extend_from_slice(pair);
        } else {
            resources.extend_from_slice(pair);
        }
    }
    (policy, resources)
}

pub fn vettid() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vettid"))
}

pub fn enclave_binary() -> PathBuf {
    let p = vettid().with_file_name("vettid-enclave");
    assert!(
        p.is_file(),
        "{} missing: build the workspace (`cargo build --workspace`)",
        p.display()
    );
    p
}

/// Spawns `vettid args…`, waits for its `ready` line, and returns it.
fn start_ready(args: &[&str], log: &Path) -> Child {
    let mut child = Command::new(vettid())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l == "ready" => return child,
            Ok(_) => continue,
            Err(e) => panic!(
                "{args:?} not ready ({e}); log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
}

pub struct Platform {
    child: Child,
    pub dir: PathBuf,
}

impl Platform {
    /// A platform whose enclaves run the test Argon2id cost and default limits.
    pub fn start(dir: &Path) -> Platform {
        Platform::start_with(dir, &FAST_ARGON)
    }

    /// A platform measuring `policy` (dev-platform flags) into its enclaves' configuration.
    pub fn start_with(dir: &Path, policy: &[&str]) -> Platform {
        std::fs::create_dir_all(dir).unwrap();
        let enclave = enclave_binary();
        let mut args = vec![
            "dev-platform",
            "--data-dir",
            dir.to_str().unwrap(),
            "--enclave",
            enclave.to_str().unwrap(),
        ];
        args.extend(policy);
        let child = start_ready(&args, &dir.join("platform.log"));
        Platform {
            child,
            dir: dir.to_owned(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("platform.sock")
    }

    /// The dev key service's socket.
    pub fn key_service(&self) -> PathBuf {
        self.dir.join("kms.sock")
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("platform.log")
    }

    /// The platform's process id (its children are the enclaves it launched).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

/// After a failed test, the end of a process's log (what CI keeps is the test's output).
pub fn show_log_if_failing(name: &str, log: &Path) {
    if !std::thread::panicking() {
        return;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    eprintln!("--- last lines of the {name} log ({}):", log.display());
    for line in tail {
        eprintln!("{line}");
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        show_log_if_failing("platform (and its enclaves)", &self.log());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Host {
    child: Child,
    pub dir: PathBuf,
    /// The platform that launches its enclave.
    platform: i32,
}

impl Host {
    /// A host storing in `objects`, its enclave launched by `platform` with resource settings
    /// `tunables`.
    pub fn start(dir: &Path, platform: &Platform, objects: &Path, tunables: &[&str]) -> Host {
        let storage = ["--objects", objects.to_str().unwrap()];
        Host::start_on(dir, platform, &storage, tunables)
    }

    /// A host storing in the S3 bucket of the test environment (`scripts/test` starts moto).
    pub fn start_s3(dir: &Path, platform: &Platform) -> Host {
        let endpoint = std::env::var("VETTID_TEST_S3_ENDPOINT")
            .expect("run ./scripts/test, which starts an S3 server");
        let bucket = std::env::var("VETTID_TEST_S3_BUCKET").expect("VETTID_TEST_S3_BUCKET");
        let storage = ["--s3-bucket", &bucket, "--s3-endpoint", &endpoint];
        Host::start_on(dir, platform, &storage, &[])
    }

    fn start_on(dir: &Path, platform: &Platform, storage: &[&str], tunables: &[&str]) -> Host {
        assert!(
            split_policy(tunables).0.is_empty(),
            "policy flags go to the platform: {tunables:?}"
        );
        std::fs::create_dir_all(dir).unwrap();
        let mut args = vec!["host", "--data-dir", dir.to_str().unwrap()];
        args.extend(storage);
        let platform_socket = platform.socket();
        let key_service = format!("unix:{}", platform.key_service().display());
        args.extend(["--platform", platform_socket.to_str().unwrap()]);
        args.extend(["--key-service", &key_service, "--"]);
        args.extend(tunables);
        let child = start_ready(&args, &dir.join("host.log"));
        Host {
            child,
            dir: dir.to_owned(),
            platform: platform.pid(),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.dir.join("host.sock")).unwrap()
    }

    /// The host process.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("host.log")
    }

    /// The current enclave process of this host (a child of the platform, connected to this
    /// host's channel socket).
    pub fn enclave_pid(&self) -> Option<i32> {
        let platform = self.platform;
        let socket = self.dir.join("enclave.sock");
        let socket = socket.to_str()?;
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| {
                let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
                let after = stat.rsplit(')').next()?;
                let mut f = after.split_whitespace();
                let state = f.next()?;
                let ppid: i32 = f.next()?.parse().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let ours = cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == socket.as_bytes());
                (ppid == platform && state != "Z" && ours).then_some(pid)
            })
    }

    /// `kill -9` the enclave and wait (bounded) until the host runs a new one that answers.
    pub fn kill_enclave(&self) {
        let old = self.enclave_pid().expect("an enclave is running");
        kill(Pid::from_raw(old), Signal::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "the host did not restart the enclave"
            );
            if let Some(new) = self.enclave_pid()
                && new != old
                && let Ok(mut c) = Client::connect(&self.dir.join("host.sock"))
                && matches!(c.call(&ToEnclave::Ping), Ok(Ok(EnclaveReply::Pong)))
            {
                return;
            }
            std::thread::yield_now();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        show_log_if_failing("host", &self.log());
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// One vault operation.
pub fn op(client: &mut Client, vault: &str, op: VaultOp) -> Result<EnclaveReply, VaultError> {
    client
        .call(&ToEnclave::Vault {
            vault: vault.into(),
            op,
        })
        .expect("control socket")
}

pub fn put(
    client: &mut Client,
    vault: &str,
    key: &str,
    value: &[u8],
) -> Result<EnclaveReply, VaultError> {
    op(
        client,
        vault,
        VaultOp::Put {
            key: key.into(),
            value: value.to_vec(),
        },
    )
}

pub fn get(client: &mut Client, vault: &str, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
    match op(client, vault, VaultOp::Get { key: key.into() })? {
        EnclaveReply::Value(v) => Ok(v),
        other => panic!("unexpected {other:?}"),
    }
}

/// Resident memory of process `pid`, KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Creates 20 vaults, so that one-off allocations in the enclave (Argon2 buffers, thread
/// stacks) come before a memory measurement.
pub fn warm_up(c: &mut Client) {
    for i in 0..20 {
        op(
            c,
            &format!("warm-{i}"),
            VaultOp::Create { pin: pin("1111") },
        )
        .unwrap();
    }
}

/// One benchmark result for `scripts/bench`, which collects these lines into its table.
pub fn metric(name: &str, value: f64) {
    println!("metric {name} {value:.4}");
}

pub fn pin(p: &str) -> Vec<u8> {
    p.as_bytes().to_vec()
}

/// A platform and one host on a fresh temporary directory (fields drop host first).
pub struct Stack {
    pub host: Host,
    pub platform: Platform,
    pub dir: tempfile::TempDir,
}

impl Stack {
    /// Starts a platform and a host storing in `<tmp>/objects`, with `enclave_args` (policy
    /// flags go to the platform, after the test Argon2id cost; the rest to the host).
    pub fn start(enclave_args: &[&str]) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let (policy, tunables) = split_policy(enclave_args);
        let policy = [&FAST_ARGON[..], &policy].concat();
        let platform = Platform::start_with(&dir.path().join("platform"), &policy);
        let host = Host::start(
            &dir.path().join("host"),
            &platform,
            &dir.path().join("objects"),
            &tunables,
        );
        Stack {
            host,
            platform,
            dir,
        }
    }

    /// The object store directory.
    pub fn objects(&self) -> PathBuf {
        self.dir.path().join("objects")
    }
}
pub mod adversary;
pub mod journey;
