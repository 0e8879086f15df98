//! Child processes of `vettid up`: logs to a file, own process group, killed with the
//! supervisor, and stopped gracefully (SIGTERM, then SIGKILL after a grace period).

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Makes the process `cmd` starts receive `signal` when its parent dies (PR_SET_PDEATHSIG), so
/// that even a `kill -9` of the parent takes it down. The workspace's one `unsafe`.
pub(crate) fn die_with_parent(cmd: &mut std::process::Command, signal: Signal) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2) and getppid(2),
    // both async-signal-safe; it allocates nothing and takes no lock.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal)?;
            // The parent may have died before prctl took effect.
            if nix::unistd::getppid() == Pid::from_raw(1) {
                return Err(std::io::Error::other("parent already gone"));
            }
            Ok(())
        });
    }
}

/// A running child and the means to observe and stop it.
pub(crate) struct Child {
    pub(crate) name: &'static str,
    pub(crate) pid: u32,
    pub(crate) log: PathBuf,
    exit: watch::Receiver<Option<ExitStatus>>,
}

/// Tells the supervisor which child exited.
pub(crate) type ExitNotice = mpsc::UnboundedSender<&'static str>;

impl Child {
    /// Starts `program args…` with stdout and stderr appended to `log`, in its own process group
    /// (so a terminal's Ctrl-C reaches only the supervisor, which stops children in order), and
    /// with PR_SET_PDEATHSIG so the kernel stops it if the supervisor dies without cleaning up.
    pub(crate) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[&OsStr],
        log: PathBuf,
        exited: ExitNotice,
    ) -> anyhow::Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        die_with_parent(cmd.as_std_mut(), Signal::SIGTERM);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("child has no pid")?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let _ = tx.send(status);
            let _ = exited.send(name);
            // Keep `child` alive until it has been reaped, so kill_on_drop never hits a reused pid.
            drop(child);
        });
        Ok(Child {
            name,
            pid,
            log,
            exit: rx,
        })
    }

    /// The exit status, if the child has exited.
    pub(crate) fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Stops the child: SIGTERM, then SIGKILL if it is still running after `grace`.
    /// Returns once the child has been reaped.
    pub(crate) async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exit_status().is_some() {
            return self.exit_status();
        }
        let pid = Pid::from_raw(self.pid as i32);
        let _ = kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.exit.wait_for(Option::is_some))
            .await
            .is_err()
        {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = self.exit.wait_for(Option::is_some).await;
        }
        self.exit_status()
    }

    /// The last `n` lines of the child's log, to explain a failure.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}
